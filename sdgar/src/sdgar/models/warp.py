"""WARP (Weston, Bengio & Usunier, IJCAI 2011), spec §3.4.

For each training pair (u, i), draw non-positive items j uniformly until one violates the margin,
f(u,j) > f(u,i) − margin, for at most ``max_trials`` draws. If the t-th draw violates, the rank of i is estimated
as r = ⌊(M − 1)/t⌋ and the pair gets the hinge loss L(r)·[margin − f(u,i) + f(u,j)]_+ with L(r) = Σ_{k≤r} 1/k.
Rows without a violation contribute nothing. The draws are vectorised in blocks of 10, 20, 40, …: the rows still
without a violator draw and score the next block, and the first violator is taken (the same distribution as one
draw at a time). Doubling bounds the rounds per batch by log2(max_trials / 10) + 1 (4 for 100, was 10): late in
training most rows find no violator, and each round synchronises with the device (with fixed blocks of 10 a Gowalla
epoch took 80–90 s on an H100, 20× BPR's; not re-measured since).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from sdgar.models.base import TrainData
from sdgar.models.bpr import BPRConfig, MFEngine
from sdgar.sampling import PositiveSet, sample_rejecting, uniform_items


@dataclass
class WARPConfig(BPRConfig):
    margin: float = 1.0  # Weston et al.'s margin
    max_trials: int = 100  # N draws at most per positive (LightFM's max_sampled = 10; Weston et al. go to M − 1)


def harmonic_table(n: int) -> torch.Tensor:
    """H[r] = Σ_{k=1..r} 1/k for r = 0..n (H[0] = 0): WARP's rank-to-weight map L(r)."""
    return torch.cat([torch.zeros(1, dtype=torch.float64),
                      torch.cumsum(1.0 / torch.arange(1, n + 1, dtype=torch.float64), 0)])


def warp_first_violation(f_pos: torch.Tensor, f_cand: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the first candidate with f_j > f_i − margin, number of draws t it took; t = 0 when none)."""
    violates = f_cand > (f_pos - margin)[:, None]
    first = violates.to(torch.int8).argmax(1)
    trials = torch.where(violates.any(1), first + 1, torch.zeros_like(first))
    return first, trials


def warp_weight(trials: torch.Tensor, n_items: int, table: torch.Tensor) -> torch.Tensor:
    """L(⌊(M − 1)/t⌋) for t ≥ 1, and 0 for rows without a violation (t = 0)."""
    rank = torch.div(n_items - 1, trials.clamp(min=1), rounding_mode="floor")
    return torch.where(trials > 0, table.to(trials.device)[rank], torch.zeros((), dtype=table.dtype,
                                                                             device=trials.device))


class WARP(MFEngine):
    name: ClassVar[str] = "warp"

    def __init__(self, n_users: int, n_items: int, config: WARPConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or WARPConfig())
        self._table = harmonic_table(n_items)
        self.block = 10  # candidates drawn in the first round; each further round draws twice as many
        self._counts = [0, 0.0]  # violators found, their trials (this epoch)

    def _first_violators(self, u: torch.Tensor, p_u: torch.Tensor, f_pos: torch.Tensor, positives: PositiveSet,
                         draw: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequential WARP draws in doubling blocks: only rows still without a violator draw the next block."""
        cfg = self.config
        j = torch.zeros_like(u)
        trials = torch.zeros_like(u)
        open_rows = torch.arange(len(u), device=u.device)
        done, block = 0, self.block
        while done < cfg.max_trials and open_rows.numel() > 0:
            n = min(block, cfg.max_trials - done)
            block *= 2
            cand, _ = sample_rejecting(draw, u[open_rows].repeat_interleave(n), positives)
            cand = cand.view(-1, n)
            q_c, b_c = self.d.items(cand)
            first, t = warp_first_violation(f_pos[open_rows], self.d.logits(p_u[open_rows], q_c, b_c), cfg.margin)
            hit = t > 0
            rows = open_rows[hit]
            j[rows] = cand[hit].gather(1, first[hit][:, None]).squeeze(1)
            trials[rows] = t[hit] + done
            open_rows = open_rows[~hit]
            done += n
        return j, trials

    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        users, pos = data.torch_pairs(self.device())
        self._positives = data.positive_set(users.device)
        self._draw = uniform_items(self.n_items, gen)
        return {"u": users, "i": pos}, {}

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Draws happen per batch, against the current model (the sequential WARP search)."""
        cfg = self.config
        u, i = rows["u"], rows["i"]
        p_u = self.d.users(u)
        q_i, b_i = self.d.items(i)
        f_pos = self.d.logits(p_u, q_i, b_i)
        with torch.no_grad():
            j, trials = self._first_violators(u, p_u, f_pos, self._positives, self._draw)
            weight = warp_weight(trials, self.n_items, self._table).to(f_pos.dtype)
        q_j, b_j = self.d.items(j)
        hinge = torch.relu(cfg.margin - f_pos + self.d.logits(p_u, q_j, b_j))
        used = (trials > 0).to(f_pos.dtype)  # rows without a violator have no j
        l2 = 0.5 * (p_u.square().sum() + q_i.square().sum() + b_i.square().sum()
                    + (used * (q_j.square().sum(1) + b_j.square())).sum())
        self._counts[0] += int((trials > 0).sum())
        self._counts[1] += float(trials.sum())
        return (weight * hinge).mean() + cfg.reg / cfg.batch_size * l2, {}

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        self._counts = [0, 0.0]
        stats = super().train_epoch(data, gen)
        found, trials = self._counts
        return {**stats, "violation_rate": found / max(data.n_interactions, 1), "mean_trials": trials / max(found, 1)}
