"""WMF / ALS: weighted matrix factorization for implicit feedback (Hu, Koren & Volinsky, ICDM 2008).

Minimise  Σ_{u,i} c_ui (p_ui − x_u·y_i)² + λ(Σ‖x_u‖² + Σ‖y_i‖²)  with p_ui = 1 for observed pairs, 0 otherwise,
and confidence c_ui = 1 + α·r_ui (HKV eq. 3; ``confidence="one_plus_alpha"``) or α·r_ui on observed pairs and 1
elsewhere (``confidence="alpha"``, what the ``implicit`` library does). Each half-sweep solves, for every user,

    (YᵀY + λI + Y_uᵀ (C_u − I) Y_u) x_u = Y_uᵀ c_u                                        (HKV eq. 4)

where YᵀY is shared and only the user's own items enter the correction (the HKV trick). Rows are sorted by degree
and solved in padded batches on any device: exactly by batched Cholesky, or approximately by a few warm-started
conjugate-gradient steps (Takács et al. 2011; ``implicit``'s default, 3 steps), which is O(d² + n_u·d) per user;
on the CPU the CG runs as a numba kernel parallel over rows (:func:`sdgar.kernels.als_cg`), elsewhere as batched
sparse products.
One :meth:`WMF.train_epoch` is one ALS iteration (users, then items). Scores are x_u·y_i (no bias).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from sdgar.models.base import Recommender, TrainData


@dataclass
class ALSConfig:
    """Defaults follow issue 10's reference run of ``implicit`` (128 factors, α = 40, reg 0.01). The number of
    ALS iterations is the trainer's ``epochs`` (15 in that run)."""

    factors: int = 128
    alpha: float = 40.0
    reg: float = 0.01
    confidence: Literal["one_plus_alpha", "alpha"] = "one_plus_alpha"  # 1 + α·r (HKV) or α·r (implicit)
    solver: Literal["cg", "cholesky"] = "cg"
    cg_steps: int = 3                    # implicit's default; CG is warm-started from the previous factors
    init_scale: float = 0.01             # factors ~ U[0, init_scale), as implicit
    batch_entries: int = 1 << 16         # padded rows × max degree per Cholesky batch
    max_batch_rows: int = 1024           # bounds the [B, d, d] Cholesky systems


def _row_batches(degree: np.ndarray, budget: int, max_rows: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Rows sorted by degree, cut into [start, end) batches for padded Cholesky solves.

    A batch ends when its padded size (rows × max degree) would pass ``budget`` or its max degree would pass twice
    its min degree (+8), so padding costs at most about 2× the real entries.
    """
    order = np.argsort(degree, kind="stable")
    deg = degree[order]
    batches, start, n = [], 0, len(order)
    while start < n:
        cap = 2 * int(deg[start]) + 8
        end = max(start + 1, min(n, start + max_rows, int(np.searchsorted(deg, cap, side="right"))))
        if (end - start) * int(deg[end - 1]) > budget:
            end = start + max(1, budget // max(int(deg[end - 1]), 1))
        batches.append((start, end))
        start = end
    return order, batches


class _Side:
    """CSR of one side (users × items or items × users) on a device, with its solve batches."""

    def __init__(self, matrix: sp.csr_matrix, confidence: np.ndarray, like: torch.Tensor, cfg: ALSConfig):
        device = like.device
        self.indptr_np = matrix.indptr.astype(np.int64)
        self.indptr = torch.from_numpy(self.indptr_np).to(device)
        self.indices_np = matrix.indices.astype(np.int64)
        self.indices = torch.from_numpy(self.indices_np).to(device)
        self.conf = torch.from_numpy(confidence).to(device=device, dtype=like.dtype)
        degree = np.diff(self.indptr_np)
        self.degree = torch.from_numpy(degree).to(device)
        order, self.batches = _row_batches(degree, cfg.batch_entries, cfg.max_batch_rows)  # Cholesky only
        self.order = torch.from_numpy(order).to(device)

    def gather(self, rows: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded factors of each row's neighbours [B, L, d] and their confidences [B, L] (0 on padding)."""
        if len(self.indices) == 0:
            return other.new_zeros(len(rows), 1, other.shape[1]), other.new_zeros(len(rows), 1)
        deg = self.degree[rows]
        offs = torch.arange(max(int(deg.max()), 1), device=rows.device)
        mask = offs[None, :] < deg[:, None]
        pos = torch.where(mask, self.indptr[rows][:, None] + offs[None, :], 0)
        conf = torch.where(mask, self.conf[pos], 0.0)
        nbr = other[self.indices[pos]] * mask[..., None]
        return nbr, conf


def _csr(side: _Side, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR tensor with ``side``'s pattern and the given values (no copy of the pattern)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(side.indptr, side.indices, values, size=size, check_invariants=False)


def _solve_cholesky(x: torch.Tensor, y: torch.Tensor, gram: torch.Tensor, side: _Side) -> None:
    for start, end in side.batches:
        rows = side.order[start:end]
        nbr, conf = side.gather(rows, y)                          # [B, L, d], [B, L]
        w = torch.where(conf != 0, conf - 1.0, conf)              # C_u − I on the observed entries
        a = gram + torch.bmm(nbr.transpose(1, 2) * w[:, None, :], nbr)
        b = torch.einsum("bld,bl->bd", nbr, conf)                 # Y_uᵀ C_u p_u   (p = 1 on observed)
        chol, info = torch.linalg.cholesky_ex(a)
        if bool((info != 0).any()):                               # only possible with α·r < 1 in "alpha" mode
            x[rows] = torch.linalg.solve(a, b)
        else:
            x[rows] = torch.cholesky_solve(b[:, :, None], chol).squeeze(2)


def _solve_cg(x: torch.Tensor, y: torch.Tensor, gram: torch.Tensor, side: _Side, steps: int) -> None:
    """Warm-started conjugate gradient for all rows at once (implicit's ``least_squares_cg``, vectorised).

    The product A_u v_u = (YᵀY + λI) v_u + Σ_{i∈u} (c_ui − 1)(y_i·v_u) y_i is a dense matmul, a sampled
    dense-dense product on the nonzeros (SDDMM) and a sparse-dense product (SpMM): O(nnz·d + n·d²), no padding.
    """
    def with_values(values: torch.Tensor) -> torch.Tensor:
        return _csr(side, values, (x.shape[0], y.shape[0]))

    pattern = with_values(torch.ones_like(side.conf))
    w = side.conf - 1.0

    def matvec(v: torch.Tensor) -> torch.Tensor:
        proj = torch.sparse.sampled_addmm(pattern, v, y.T, beta=0.0).values()   # y_i·v_u on the nonzeros
        return torch.addmm(v @ gram, with_values(proj * w), y)

    r = with_values(side.conf) @ y - matvec(x)                                # b − A x,  b = Y_uᵀ C_u p_u
    p = r.clone()
    rs = (r * r).sum(1)
    for _ in range(steps):
        active = rs > 1e-20
        if not bool(active.any()):
            break
        ap = matvec(p)
        step = torch.where(active, rs / (p * ap).sum(1).clamp_min(1e-30), 0.0)[:, None]
        x.addcmul_(step, p)
        r.addcmul_(step, ap, value=-1.0)
        rs_new = (r * r).sum(1)
        p.mul_(torch.where(active, rs_new / rs.clamp_min(1e-30), 0.0)[:, None]).add_(r)
        rs = rs_new


def solve_side(x: torch.Tensor, y: torch.Tensor, side: _Side, cfg: ALSConfig) -> None:
    """Update every row of ``x`` in place given the fixed factors ``y`` (one ALS half-sweep, HKV eq. 4)."""
    gram = y.T @ y + cfg.reg * torch.eye(y.shape[1], device=y.device, dtype=y.dtype)  # YᵀY + λI, shared
    if cfg.solver == "cholesky":
        _solve_cholesky(x, y, gram, side)
    elif x.device.type == "cpu" and x.is_contiguous() and y.is_contiguous():
        from sdgar import kernels  # one parallel pass per row, as implicit's CPU solver (issue 21)

        kernels.als_cg(x.numpy(), y.numpy(), gram.numpy(), side.indptr_np, side.indices_np, side.conf.numpy(),
                       cfg.cg_steps)
    else:
        _solve_cg(x, y, gram, side, cfg.cg_steps)


class WMF(Recommender):
    """Weighted matrix factorization fitted by alternating least squares (registry name ``als``)."""

    name: ClassVar[str] = "als"

    def __init__(self, n_users: int, n_items: int, config: ALSConfig | None = None,
                 gen: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg = config or ALSConfig()
        # buffers, not parameters: ALS has no gradient step, and buffers still go into state_dict / .to(device)
        self.register_buffer("user_factors", torch.rand(n_users, cfg.factors, generator=gen) * cfg.init_scale)
        self.register_buffer("item_factors", torch.rand(n_items, cfg.factors, generator=gen) * cfg.init_scale)
        self._sides: tuple[Any, _Side, _Side] | None = None

    def _confidence(self, values: np.ndarray) -> np.ndarray:
        c = self.cfg.alpha * values.astype(np.float64)
        return c + 1.0 if self.cfg.confidence == "one_plus_alpha" else c

    def _prepare(self, data: TrainData) -> tuple[_Side, _Side]:
        key = (id(data.matrix), data.matrix.nnz, data.matrix.shape, self.user_factors.device, self.user_factors.dtype)
        if self._sides is None or self._sides[0] != key:
            ui = data.matrix.tocsr()
            ui.sort_indices()
            iu = ui.T.tocsr()
            iu.sort_indices()
            like = self.user_factors
            self._sides = (key, _Side(ui, self._confidence(ui.data), like, self.cfg),
                           _Side(iu, self._confidence(iu.data), like, self.cfg))
        return self._sides[1], self._sides[2]

    @torch.no_grad()
    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        del gen  # ALS is deterministic given its initialisation
        users, items = self._prepare(data)
        solve_side(self.user_factors, self.item_factors, users, self.cfg)
        solve_side(self.item_factors, self.user_factors, items, self.cfg)
        return {"loss": self.loss(data)}

    @torch.no_grad()
    def loss(self, data: TrainData) -> float:
        """The WMF objective per observed pair, in O(nnz·d + (U + I)·d²) via Σ_all s² = tr(XᵀX·YᵀY)."""
        users, _ = self._prepare(data)
        x, y = self.user_factors, self.item_factors
        pattern = _csr(users, torch.ones_like(users.conf), (x.shape[0], y.shape[0]))
        s = torch.sparse.sampled_addmm(pattern, x, y.T, beta=0.0).values()  # x_u·y_i on the observed pairs
        total = torch.sum((x.T @ x) * (y.T @ y))                             # every pair with c = 1, p = 0
        total += torch.sum(users.conf * (1 - s) ** 2 - s * s)                # observed: c(1 − s)² instead of s²
        total += self.cfg.reg * (x.pow(2).sum() + y.pow(2).sum())
        return float(total) / max(len(users.indices), 1)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.user_factors, self.item_factors, None
