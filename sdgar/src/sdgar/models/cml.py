"""CML, collaborative metric learning (Hsieh et al., WWW 2017), spec §3.4.

Users and items live in one Euclidean space; u should be closer to its items than to any other, by a margin:
for each (u, i), U uniform non-positive candidates are drawn, the closest one j is the impostor, and
    loss = log(rank + 1) · [m + d(u,i)² − d(u,j)²]_+,   rank ≈ ⌊M · #{impostors among the U} / U⌋
(the WARP-style rank weight of the paper), plus the covariance regulariser
λ_c · (‖C‖_F² − ‖diag C‖²)/N on the batch's embeddings. After each step every embedding row that was used is
clipped back into the unit ball (‖·‖ ≤ 1). Ranking by −d(u,j)² = 2u·j − ‖j‖² − ‖u‖² is factor form:
user factor 2u, item factor j, item bias −‖j‖² (the −‖u‖² term does not change a user's ranking).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from sdgar.engine import SampledNegativeEngine
from sdgar.models.base import TrainData
from sdgar.models.mf import make_optimizer


@dataclass
class CMLConfig:
    dim: int = 32  # same d as the other baselines (the CML paper uses 100)
    margin: float = 1.5  # m (CollMetric default)
    clip_norm: float = 1.0  # rows are clipped to ‖·‖ ≤ clip_norm after each step
    negatives: int = 10  # U candidates per positive
    cov_weight: float = 1.0  # λ_c of the covariance regulariser (0 disables it)
    use_rank_weight: bool = True
    batch_size: int = 512
    learning_rate: float = 0.001
    optimizer: Literal["adam", "lazy_adam"] = "adam"


def clip_rows(weight: torch.Tensor, rows: torch.Tensor | None, max_norm: float) -> None:
    """Scale the given rows (all when None) of ``weight`` in place so that their L2 norm is at most ``max_norm``."""
    if rows is None:
        weight.data.mul_((max_norm / weight.data.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0))
        return
    rows = torch.unique(rows)
    w = weight.data[rows]
    scale = (max_norm / w.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    weight.data[rows] = w * scale


def covariance_loss(x: torch.Tensor) -> torch.Tensor:
    """(‖C‖_F² − ‖diag C‖²) / N for the covariance C of the rows of x [N, d] (CML §3.4)."""
    xc = x - x.mean(0, keepdim=True)
    cov = xc.T @ xc / x.shape[0]
    return (cov.square().sum() - cov.diagonal().square().sum()) / x.shape[0]


class CML(SampledNegativeEngine):
    name: ClassVar[str] = "cml"

    def __init__(self, n_users: int, n_items: int, config: CMLConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CMLConfig()
        self.n_items = n_items
        std = 1.0 / math.sqrt(config.dim)  # CollMetric: N(0, 1/√d)
        self.user = nn.Parameter(torch.randn(n_users, config.dim) * std)
        self.item = nn.Parameter(torch.randn(n_items, config.dim) * std)
        with torch.no_grad():
            clip_rows(self.user, None, config.clip_norm)
            clip_rows(self.item, None, config.clip_norm)
        self.optimizer = make_optimizer(self.parameters(), config.optimizer, config.learning_rate)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        item = self.item.detach()
        return 2.0 * self.user.detach(), item, -item.square().sum(1)

    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        users, pos = data.torch_pairs(self.user.device)
        cands, _ = self.uniform_negatives(data, users, self.config.negatives, gen)
        return {"u": users, "i": pos, "c": cands}, {}

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        u, i, c = rows["u"], rows["i"], rows["c"]
        e_u, e_i, e_c = self.user[u], self.item[i], self.item[c]
        d_pos = (e_u - e_i).square().sum(1)
        d_neg = (e_u[:, None, :] - e_c).square().sum(2)  # [B, U]
        closest = d_neg.min(1).values
        hinge = torch.relu(cfg.margin + d_pos - closest)
        if cfg.use_rank_weight:
            with torch.no_grad():
                impostors = (cfg.margin + d_pos[:, None] - d_neg > 0).float().mean(1)
                weight = torch.log1p(torch.floor(impostors * self.n_items))
            hinge = hinge * weight
        loss = hinge.sum() / len(u)
        if cfg.cov_weight > 0:
            loss = loss + cfg.cov_weight * covariance_loss(torch.cat([e_u, e_i]))
        return loss, {}

    @torch.no_grad()
    def after_step(self, rows: dict[str, torch.Tensor]) -> None:
        """CML: embeddings stay inside the unit ball."""
        cfg = self.config
        if cfg.optimizer == "lazy_adam":  # only the rows used in the batch moved
            clip_rows(self.user, rows["u"], cfg.clip_norm)
            clip_rows(self.item, torch.cat([rows["i"], rows["c"].reshape(-1)]), cfg.clip_norm)
        else:  # dense Adam moves every row through its momentum: clip all (same cost as the step)
            clip_rows(self.user, None, cfg.clip_norm)
            clip_rows(self.item, None, cfg.clip_norm)
