"""BPR (Rendle et al., UAI 2009): −log σ(f(u,i) − f(u,j)) with uniformly drawn non-positive j (spec §3.4).

Same MF scorer, data, trainer and evaluator as SD-GAR; Adam and L2 in SD-GAR's form (λ / batch_size · ½‖θ‖²
over the rows in the batch), so that the two differ only in how negatives are drawn and weighted.
``engine = "fast"``: Hogwild per-positive steps (:func:`sdgar.kernels.bpr_epoch`), same loss and L2 per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from sdgar.engine import SampledNegativeEngine
from sdgar.models.base import TrainData
from sdgar.models.mf import MF, make_optimizer


@dataclass
class BPRConfig:
    dim: int = 32  # same d as SD-GAR's discriminator (spec §1.2)
    reg: float = 0.01  # λ, divided by batch_size like SD-GAR's λ_D
    batch_size: int = 512
    learning_rate: float = 0.001
    optimizer: Literal["adam", "lazy_adam"] = "adam"
    neg_samples: int = 1  # negatives per positive (each is one BPR pair)
    engine: Literal["torch", "fast"] = "torch"  # fast: numba Hogwild per-positive steps on the CPU (issue 21)
    fast_optimizer: Literal["rowwise_adagrad", "adagrad", "sgd"] = "rowwise_adagrad"  # engine fast only
    fast_lr: float = 0.05  # engine fast only (LightFM's Adagrad default)


def bpr_batch_loss(d: MF, reg: float, batch_size: int, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor
                   ) -> torch.Tensor:
    """−log σ(f(u,i) − f(u,j)) + λ/B·½‖θ‖² over the batch rows: the BPR step that DNS and AOBPR share."""
    p_u = d.users(u)
    (q_i, b_i), (q_j, b_j) = d.items(i), d.items(j)
    loss = F.softplus(-(d.logits(p_u, q_i, b_i) - d.logits(p_u, q_j, b_j)))
    l2 = 0.5 * (p_u.square().sum() + q_i.square().sum() + q_j.square().sum() + b_i.square().sum()
                + b_j.square().sum())
    return loss.mean() + reg / batch_size * l2


class MFEngine(SampledNegativeEngine):
    """An :class:`MF` scorer ``self.d`` with one optimizer: the base of BPR, DNS, SA, WARP and AOBPR."""

    supports_amp: ClassVar[bool] = True

    def __init__(self, n_users: int, n_items: int, config: Any) -> None:
        super().__init__()
        self.config = config
        self.n_items = n_items
        self.d = MF(n_users, n_items, config.dim, sparse=config.optimizer == "lazy_adam")
        self.optimizer = make_optimizer(self.d.parameters(), config.optimizer, config.learning_rate)
        self._fast_acc: dict[str, torch.Tensor] | None = None

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.d.factors()

    def bpr_fast_epoch(self, data: TrainData, gen: torch.Generator, candidates: int) -> dict[str, float]:
        """BPR/DNS on the fast engine: the best of ``candidates`` uniform non-positives per positive."""
        from sdgar import kernels

        cfg = self.config
        indptr, indices = self.fast_arrays(data)[2:]
        acc = self.fast_state()
        p, q, b = (t.detach().numpy() for t in (self.d.user, self.d.item, self.d.bias))
        ap, aq, ab = (acc[k].numpy() for k in ("user", "item", "bias"))

        def kernel(users, items, seed, chunk0, out):
            kernels.bpr_epoch(users, items, indptr, indices, p, q, b, ap, aq, ab, candidates, cfg.reg,
                              cfg.fast_lr, self.fast_optimizer_code(), seed, chunk0, out)

        total = self.run_fast(data, gen, kernel, 2)
        n = max(data.n_interactions, 1)
        return {"loss": float(total[0]) / n, "reject_rate": float(total[1]) / (n * candidates)}


class BPR(MFEngine):
    name: ClassVar[str] = "bpr"

    def __init__(self, n_users: int, n_items: int, config: BPRConfig | None = None) -> None:
        super().__init__(n_users, n_items, config or BPRConfig())

    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        users, pos = data.torch_pairs(self.device())
        s = self.config.neg_samples
        if s > 1:
            users, pos = users.repeat_interleave(s), pos.repeat_interleave(s)
        negs, reject_rate = self.uniform_negatives(data, users, 1, gen)
        return {"u": users, "i": pos, "j": negs.view(-1)}, {"reject_rate": reject_rate}

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        return bpr_batch_loss(self.d, cfg.reg, cfg.batch_size, rows["u"], rows["i"], rows["j"]), {}

    def fast_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        if self.config.neg_samples != 1:
            from neurips20_common import UserError

            raise UserError("engine fast draws one negative per positive for BPR; set model.neg_samples=1")
        return self.bpr_fast_epoch(data, gen, 1)
