"""The contract between models, the trainer and the evaluator.

A model is an ``nn.Module`` that (1) trains one epoch at a time on :class:`TrainData` and (2) scores users
against all items through factors, ``score(u, j) = user[u] · item[j] + item_bias[j]``, which is all the
full-ranking evaluator needs. Non-factor models (none so far) may override :meth:`Recommender.scores`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from sdgar.precision import MixedPrecision
from sdgar.sampling import PositiveSet


@dataclass
class TrainData:
    """Positive (implicit) interactions of the training split as CSR over users × items (0/1)."""

    matrix: sp.csr_matrix
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def n_interactions(self) -> int:
        return int(self.matrix.nnz)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) index arrays of every positive, in CSR order."""
        coo = self.matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)

    def torch_csr(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(indptr, indices) as int64 tensors, for membership tests and sampling on any device."""
        return (torch.from_numpy(self.matrix.indptr.astype(np.int64)).to(device),
                torch.from_numpy(self.matrix.indices.astype(np.int64)).to(device))

    def torch_pairs(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`pairs` as int64 tensors on ``device`` (cached)."""
        key = ("pairs", str(device))
        if key not in self._cache:
            u, i = self.pairs()
            self._cache[key] = (torch.from_numpy(u).to(device), torch.from_numpy(i).to(device))
        return self._cache[key]

    def positive_set(self, device: torch.device | str = "cpu") -> PositiveSet:
        """Membership test for training pairs on ``device`` (cached), used to reject sampled negatives."""
        key = ("positives", str(device))
        if key not in self._cache:
            u, i = self.torch_pairs(device)
            self._cache[key] = PositiveSet(u, i, self.n_items)
        return self._cache[key]


class Recommender(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`train_epoch` and :meth:`factors`."""

    name: ClassVar[str] = "base"
    supports_amp: ClassVar[bool] = False  # True where the loss forward runs under ``self.precision.autocast()``
    precision: MixedPrecision = MixedPrecision()  # fp32; the trainer sets the run's (issue 7, CUDA only)

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        """One pass of this model's training procedure; returns loss statistics for logging.

        All randomness must come from ``gen`` (and generators the model owns and checkpoints), so that a
        resumed run repeats exactly.
        """
        raise NotImplementedError

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(user [U, d], item [I, d], item bias [I] or None) used for ranking."""
        raise NotImplementedError

    @torch.no_grad()
    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of ``users`` against every item, ``[len(users), I]``."""
        user, item, bias = self.factors()
        if bias is not None:  # fused: no second [n, n_items] matrix for the bias
            return torch.addmm(bias.to(user.dtype), user[users], item.T)
        return user[users] @ item.T

    def extra_state_dict(self) -> dict[str, Any]:
        """Non-parameter training state (e.g. optimizer states owned by the model) for checkpoints."""
        return {}

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        del state
