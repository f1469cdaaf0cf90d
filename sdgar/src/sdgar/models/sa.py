"""SA, self-adversarial negative weighting (Sun et al., ICLR 2019, RotatE), spec §3.4 and §1.5.

|S| negatives per positive are drawn uniformly from the non-positives and weighted by w_j = softmax_j(α·f(u,j))
over the sample, with the weights **detached** (no gradient through them). The loss is SD-GAR's discriminator loss
(:func:`sdgar.models.sdgar.pointwise_loss`) with this w in place of the SNIS weights, i.e. SD-GAR with a uniform
proposal and g/T replaced by α·f.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from sdgar.models.base import TrainData
from sdgar.models.bpr import BPRConfig, MFEngine
from sdgar.models.sdgar import pointwise_loss


@dataclass
class SAConfig(BPRConfig):
    neg_samples: int = 5  # |S| uniform negatives per positive, as SD-GAR's dis_sample_num
    adv_temperature: float = 1.0  # α of softmax(α·f) (RotatE's adversarial temperature)


def sa_weights(f_neg: torch.Tensor, alpha: float) -> torch.Tensor:
    """softmax_j(α·f(u,j)) over each row's sample, detached."""
    return torch.softmax(alpha * f_neg.detach(), dim=-1)


class SA(MFEngine):
    name: ClassVar[str] = "sa"

    def __init__(self, n_users: int, n_items: int, config: SAConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or SAConfig())

    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        users, pos = data.torch_pairs(self.device())
        negs, reject_rate = self.uniform_negatives(data, users, self.config.neg_samples, gen)
        return {"u": users, "i": pos, "j": negs}, {"reject_rate": reject_rate}

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        return pointwise_loss(self.d, rows["u"], rows["i"], rows["j"],
                              lambda f_neg, g: sa_weights(f_neg, cfg.adv_temperature), cfg.reg, cfg.batch_size)

    def fast_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        from sdgar import kernels

        cfg = self.config
        indptr, indices = self.fast_arrays(data)[2:]
        acc = self.fast_state()
        p, q, b = (t.detach().numpy() for t in (self.d.user, self.d.item, self.d.bias))
        ap, aq, ab = (acc[k].numpy() for k in ("user", "item", "bias"))
        dummy_f, dummy_t = kernels.np.zeros((1, 1), kernels.np.float32), kernels.np.zeros((1, 1), kernels.np.uint64)
        s = cfg.neg_samples

        def kernel(users, items, seed, chunk0, out):
            kernels.snis_epoch(users, items, indptr, indices, p, q, b, ap, aq, ab, dummy_f, dummy_f, dummy_t, dummy_t,
                               s, 0, 1, 1.0, cfg.adv_temperature, False, 1.0,
                               cfg.reg, cfg.fast_lr, self.fast_optimizer_code(), seed, chunk0, out)

        total = self.run_fast(data, gen, kernel, 3)
        n = max(data.n_interactions, 1)
        return {"loss": float(total[0]) / n, "reject_rate": float(total[1]) / (n * s), "ess": float(total[2]) / n}
