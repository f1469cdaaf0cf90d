"""AOBPR, adaptive oversampling for BPR (Rendle & Freudenthaler, WSDM 2014), spec §3.4.

Negatives are drawn to be hard for the current model, at O(1) per draw instead of scoring all items:
1. a rank r ∈ {0, …, M−1} with p(r) ∝ exp(−r/λ) (truncated geometric, drawn by inverse CDF);
2. a factor f with p(f|u) ∝ |p_uf|·σ_f, where σ_f is the spread (std) of item factor f over items;
3. j = the item at rank r of factor f, counted from the top when p_uf > 0 and from the bottom when p_uf < 0,
   i.e. the items that push p_uf·q_jf (and so f(u,j)) up come first.
The per-factor item rankings and σ are re-computed every ``resort_every`` draws (the paper: |I|·log|I|).
Training positives are rejected and redrawn; the update is BPR's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from sdgar.models.base import TrainData
from sdgar.models.bpr import BPRConfig, MFEngine, bpr_batch_loss
from sdgar.sampling import sample_rejecting


@dataclass
class AOBPRConfig(BPRConfig):
    rank_lambda: float = 500.0  # λ of p(r) ∝ exp(−r/λ) (LibRec's AoBPR default 500)
    resort_every: int | None = None  # draws between re-sorts; None = M·ln M (Rendle & Freudenthaler)


def geometric_ranks(n: int, n_items: int, lam: float, gen: torch.Generator | None, device: torch.device
                    ) -> torch.Tensor:
    """n ranks with p(r) ∝ exp(−r/λ) on r = 0..M−1: the floor of an Exp(1/λ) draw truncated to [0, M)."""
    u = torch.rand(n, generator=gen, device=device, dtype=torch.float64)
    r = -lam * torch.log1p(-u * -math.expm1(-n_items / lam))
    return r.floor().long().clamp_(0, n_items - 1)


class FactorRanking:
    """Items sorted by each factor (descending) and the factor spreads σ_f, from one snapshot of item factors."""

    def __init__(self, item: torch.Tensor) -> None:
        self.order = torch.argsort(item.detach(), dim=0, descending=True)  # [M, d]: rank -> item, per factor
        self.sigma = item.detach().std(0)

    def draw(self, p_u: torch.Tensor, lam: float, gen: torch.Generator | None) -> torch.Tensor:
        """One adaptive negative per row of user factors ``p_u`` [B, d]."""
        n_items = self.order.shape[0]
        w = p_u.detach().abs() * self.sigma
        w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))  # all-zero user: uniform factor
        f = torch.multinomial(w, 1, generator=gen).squeeze(1)
        r = geometric_ranks(len(p_u), n_items, lam, gen, p_u.device)
        negative = p_u.detach().gather(1, f[:, None]).squeeze(1) < 0
        r = torch.where(negative, n_items - 1 - r, r)  # p_uf < 0: the smallest q_jf make f(u,j) largest
        return self.order[r, f]


class AOBPR(MFEngine):
    name: ClassVar[str] = "aobpr"

    def __init__(self, n_users: int, n_items: int, config: AOBPRConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or AOBPRConfig())

    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        users, pos = data.torch_pairs(self.device())
        self._positives = data.positive_set(users.device)
        self._resort_every = self.config.resort_every or max(1, int(self.n_items * math.log(max(self.n_items, 2))))
        self._ranking = FactorRanking(self.d.item)
        self._since_sort, self._rejected = 0, 0
        return {"u": users, "i": pos}, {}

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adaptive draws per batch from the current factor rankings, re-sorted every ``resort_every`` draws."""
        cfg = self.config
        u, i = rows["u"], rows["i"]
        if self._since_sort >= self._resort_every:
            self._ranking, self._since_sort = FactorRanking(self.d.item), 0
        rk = self._ranking
        j, rej = sample_rejecting(lambda uu: rk.draw(self.d.user[uu], cfg.rank_lambda, gen), u, self._positives)
        self._since_sort += len(u) + rej
        self._rejected += rej
        return bpr_batch_loss(self.d, cfg.reg, cfg.batch_size, u, i, j), {}

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        stats = super().train_epoch(data, gen)
        return {**stats, "reject_rate": self._rejected / max(data.n_interactions, 1)}
