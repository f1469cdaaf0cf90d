"""DNS, dynamic negative sampling (Zhang et al., SIGIR 2013; ``irgan/cf_dns.py``), spec §3.4.

For each training pair (u, i) draw X candidates uniformly from u's non-positives, keep the one the *current*
model scores highest, and take a BPR step on (u, i, j). Same MF scorer, Adam, L2 form and trainer as BPR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from sdgar.models.base import TrainData
from sdgar.models.bpr import BPR, BPRConfig, bpr_batch_loss
from sdgar.sampling import sample_rejecting, uniform_items


@dataclass
class DNSConfig(BPRConfig):
    candidates: int = 5  # X uniform candidates per positive (irgan cf_dns.py: DNS_K = 5)


def dns_pick(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The highest-scoring candidate of each row: ``candidates[b, argmax_x scores[b, x]]``."""
    return candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


class DNS(BPR):
    name: ClassVar[str] = "dns"

    def __init__(self, n_users: int, n_items: int, config: DNSConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or DNSConfig())

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        cfg = self.config
        device = self.d.user.device
        users, pos = data.torch_pairs(device)
        x = cfg.candidates
        cands, rejected = sample_rejecting(uniform_items(self.n_items, gen), users.repeat_interleave(x),
                                           data.positive_set(device))
        cands = cands.view(-1, x)
        order = torch.randperm(users.numel(), generator=gen, device=device)
        total, n_batches = 0.0, 0
        for s in range(0, users.numel(), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            u, i, c = users[idx], pos[idx], cands[idx]
            with torch.no_grad():  # scored by the current model, i.e. after every previous step (dynamic)
                q_c, b_c = self.d.items(c)
                j = dns_pick(self.d.logits(self.d.users(u), q_c, b_c), c)
            with self.precision.autocast():
                loss = bpr_batch_loss(self.d, cfg.reg, cfg.batch_size, u, i, j)
            self.precision.step(loss, self.optimizer)
            total += loss.detach()
            n_batches += 1
        return {"loss": float(total) / max(n_batches, 1), "reject_rate": rejected / max(cands.numel(), 1)}
