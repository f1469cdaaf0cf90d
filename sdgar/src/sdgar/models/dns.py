"""DNS, dynamic negative sampling (Zhang et al., SIGIR 2013; ``irgan/cf_dns.py``), spec §3.4.

For each training pair (u, i) draw X candidates uniformly from u's non-positives, keep the one the *current*
model scores highest, and take a BPR step on (u, i, j). Same MF scorer, Adam, L2 form and engine as BPR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from sdgar.models.base import TrainData
from sdgar.models.bpr import BPRConfig, MFEngine, bpr_batch_loss


@dataclass
class DNSConfig(BPRConfig):
    candidates: int = 5  # X uniform candidates per positive (irgan cf_dns.py: DNS_K = 5)


def dns_pick(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The highest-scoring candidate of each row: ``candidates[b, argmax_x scores[b, x]]``."""
    return candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


class DNS(MFEngine):
    name: ClassVar[str] = "dns"

    def __init__(self, n_users: int, n_items: int, config: DNSConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or DNSConfig())

    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        users, pos = data.torch_pairs(self.device())
        cands, reject_rate = self.uniform_negatives(data, users, self.config.candidates, gen)
        return {"u": users, "i": pos, "c": cands}, {"reject_rate": reject_rate}

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        u, c = rows["u"], rows["c"]
        with torch.no_grad():  # scored by the current model, i.e. after every previous step (dynamic)
            q_c, b_c = self.d.items(c)
            j = dns_pick(self.d.logits(self.d.users(u), q_c, b_c), c)
        return bpr_batch_loss(self.d, cfg.reg, cfg.batch_size, u, rows["i"], j), {}

    def fast_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        return self.bpr_fast_epoch(data, gen, self.config.candidates)
