"""SA, self-adversarial negative weighting (Sun et al., ICLR 2019, RotatE), spec §3.4 and §1.5.

|S| negatives per positive are drawn uniformly from the non-positives and weighted by w_j = softmax_j(α·f(u,j))
over the sample, with the weights **detached** (no gradient through them). The loss is SD-GAR's discriminator loss
with this w in place of the SNIS weights, i.e. SD-GAR with a uniform proposal and g/T replaced by α·f:
½·mean(−log σ f(u,i)) + ½·mean(Σ_j w_j·softplus f(u,j)) + λ/B·½(‖p_u‖² + ‖q_i‖² + b_i² + Σ_j(‖q_j‖² + b_j²)/|S|).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from sdgar.models.base import TrainData
from sdgar.models.bpr import BPR, BPRConfig
from sdgar.sampling import sample_rejecting, uniform_items


@dataclass
class SAConfig(BPRConfig):
    neg_samples: int = 5  # |S| uniform negatives per positive, as SD-GAR's dis_sample_num
    adv_temperature: float = 1.0  # α of softmax(α·f) (RotatE's adversarial temperature)


def sa_weights(f_neg: torch.Tensor, alpha: float) -> torch.Tensor:
    """softmax_j(α·f(u,j)) over each row's sample, detached."""
    return torch.softmax(alpha * f_neg.detach(), dim=-1)


class SA(BPR):
    name: ClassVar[str] = "sa"

    def __init__(self, n_users: int, n_items: int, config: SAConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or SAConfig())

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        cfg = self.config
        device = self.d.user.device
        users, pos = data.torch_pairs(device)
        s = cfg.neg_samples
        negs, rejected = sample_rejecting(uniform_items(self.n_items, gen), users.repeat_interleave(s),
                                          data.positive_set(device))
        negs = negs.view(-1, s)
        order = torch.randperm(users.numel(), generator=gen, device=device)
        total, n_batches = 0.0, 0
        for start in range(0, users.numel(), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            u, i, j = users[idx], pos[idx], negs[idx]
            p_u = self.d.users(u)
            (q_i, b_i), (q_j, b_j) = self.d.items(i), self.d.items(j)
            f_pos, f_neg = self.d.logits(p_u, q_i, b_i), self.d.logits(p_u, q_j, b_j)
            w = sa_weights(f_neg, cfg.adv_temperature)
            data_loss = 0.5 * (F.softplus(-f_pos).mean() + (w * F.softplus(f_neg)).sum(1).mean())
            l2 = 0.5 * (p_u.square().sum() + q_i.square().sum() + b_i.square().sum()
                        + (q_j.square().sum() + b_j.square().sum()) / s)
            loss = data_loss + cfg.reg / cfg.batch_size * l2
            self.precision.step(loss, self.optimizer)
            total += loss.detach()
            n_batches += 1
        return {"loss": float(total) / max(n_batches, 1), "reject_rate": rejected / max(negs.numel(), 1)}
