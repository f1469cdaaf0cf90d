"""BPR (Rendle et al., UAI 2009): −log σ(f(u,i) − f(u,j)) with uniformly drawn non-positive j (spec §3.4).

Same MF scorer, data, trainer and evaluator as SD-GAR; Adam and L2 in SD-GAR's form (λ / batch_size · ½‖θ‖²
over the rows in the batch), so that the two differ only in how negatives are drawn and weighted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from sdgar.models.base import Recommender, TrainData
from sdgar.models.mf import MF, make_optimizer
from sdgar.sampling import sample_rejecting, uniform_items


@dataclass
class BPRConfig:
    dim: int = 32  # same d as SD-GAR's discriminator (spec §1.2)
    reg: float = 0.01  # λ, divided by batch_size like SD-GAR's λ_D
    batch_size: int = 512
    learning_rate: float = 0.001
    optimizer: Literal["adam", "lazy_adam"] = "adam"
    neg_samples: int = 1  # negatives per positive (each is one BPR pair)


def bpr_batch_loss(d: MF, reg: float, batch_size: int, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor
                   ) -> torch.Tensor:
    """−log σ(f(u,i) − f(u,j)) + λ/B·½‖θ‖² over the batch rows: the BPR step that DNS and AOBPR share."""
    p_u = d.users(u)
    (q_i, b_i), (q_j, b_j) = d.items(i), d.items(j)
    loss = F.softplus(-(d.logits(p_u, q_i, b_i) - d.logits(p_u, q_j, b_j)))
    l2 = 0.5 * (p_u.square().sum() + q_i.square().sum() + q_j.square().sum() + b_i.square().sum()
                + b_j.square().sum())
    return loss.mean() + reg / batch_size * l2


class BPR(Recommender):
    name: ClassVar[str] = "bpr"
    supports_amp: ClassVar[bool] = True  # DNS and AOBPR inherit it

    def __init__(self, n_users: int, n_items: int, config: BPRConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or BPRConfig()
        self.n_items = n_items
        self.d = MF(n_users, n_items, config.dim, sparse=config.optimizer == "lazy_adam")
        self.optimizer = make_optimizer(self.d.parameters(), config.optimizer, config.learning_rate)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.d.factors()

    def extra_state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        cfg = self.config
        device = self.d.user.device
        users, pos = data.torch_pairs(device)
        if cfg.neg_samples > 1:
            users, pos = users.repeat_interleave(cfg.neg_samples), pos.repeat_interleave(cfg.neg_samples)
        negs, rejected = sample_rejecting(uniform_items(self.n_items, gen), users, data.positive_set(device))
        order = torch.randperm(users.numel(), generator=gen, device=device)
        total, n_batches = 0.0, 0
        for s in range(0, users.numel(), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            with self.precision.autocast():
                loss = bpr_batch_loss(self.d, cfg.reg, cfg.batch_size, users[idx], pos[idx], negs[idx])
            self.precision.step(loss, self.optimizer)
            total += loss.detach()
            n_batches += 1
        return {"loss": float(total) / max(n_batches, 1), "reject_rate": rejected / max(users.numel(), 1)}
