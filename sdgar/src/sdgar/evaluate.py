"""Full-ranking evaluation (spec §3.3): every item is ranked, the user's training items are masked.

One pass over users in chunks computes, at every cutoff k, per user and then averaged over users with test items:

- ``P@k``      hits in the top k / k (official definition);
- ``Recall@k`` hits in the top k / |T_u|;
- ``NDCG@k``   binary-gain DCG with discount 1/log2(rank+1), divided by the DCG of min(|T_u|, k) hits (official
  ``dcg_at_k([1]*|T_u|, k)``);
- ``MAP@k``    Σ_{r≤k} hit_r · P@r / min(|T_u|, k);
- ``MRR@k``    1 / rank of the first hit within the top k, else 0 (official MRR is ``MRR@50``);
- ``Hit@k``    1 when the top k holds a test item.

On the CPU the masking and the top-k selection are one parallel numba pass over each score block
(:func:`sdgar.kernels.topk_masked`), and hits are found by binary search in the sorted test keys (issue 21: no
dense [chunk, n_items] masks). For factor scorers on a CPU with bfloat16 dot-product instructions the score block is
a bfloat16 GEMM (about 3× the float32 one here): its top L = 128 per user are rescored exactly in float32 and a
per-user error bound proves that the exact top k is among them (:func:`sdgar.kernels.rescore_topk`); users whose
bound fails are scored again in float32. The ranking is the float32 one either way.

Works for anything with ``scores(users) -> [n, n_items]`` (every :class:`~sdgar.models.base.Recommender`), or
for raw factors through :class:`FactorScorer`. Runs on the scorer's device (CPU or CUDA).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from neurips20_common import torch_threads

DEFAULT_CUTOFFS: tuple[int, ...] = (3, 5, 10, 20, 50)
METRICS: tuple[str, ...] = ("P", "Recall", "NDCG", "MAP", "MRR", "Hit")

Scorer = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FactorScorer:
    """``score(u, j) = user[u] · item[j] + bias[j]`` from plain factor matrices."""

    user: torch.Tensor
    item: torch.Tensor
    bias: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:  # one fused pass: no second [n, n_items] matrix for the bias
            return torch.addmm(self.bias, self.user[users], self.item.T)
        return self.user[users] @ self.item.T


def ranking_metrics(hits: torch.Tensor, n_test: torch.Tensor,
                    cutoffs: Sequence[int] = DEFAULT_CUTOFFS) -> dict[str, torch.Tensor]:
    """Per-user metrics from a hit matrix.

    ``hits[u, r]`` is 1 when the item at rank r+1 of user u is a test item (ranks beyond the list are 0);
    ``n_test[u]`` = |T_u| ≥ 1. Returns ``{"NDCG@10": tensor[n_users], ...}`` in float64.
    """
    hits = hits.to(torch.float64)
    n_users, depth = hits.shape
    kmax = max(cutoffs)
    if depth < kmax:  # fewer items than the largest cutoff: the missing ranks are misses
        hits = torch.cat([hits, hits.new_zeros(n_users, kmax - depth)], dim=1)
    n_test = n_test.to(hits.device, torch.float64)
    ranks = torch.arange(1, kmax + 1, device=hits.device, dtype=torch.float64)
    discount = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(1)
    dcg = (hits * discount).cumsum(1)
    ideal = discount.cumsum(0)  # ideal[m-1] = DCG of m hits at the top
    prec_at_r = cum_hits / ranks
    ap_sum = (hits * prec_at_r).cumsum(1)
    first = torch.where(hits.any(1), hits.argmax(1).to(torch.float64) + 1.0, torch.full_like(n_test, torch.inf))
    out: dict[str, torch.Tensor] = {}
    for k in cutoffs:
        h = cum_hits[:, k - 1]
        m = torch.clamp(n_test, max=k).long()
        out[f"P@{k}"] = h / k
        out[f"Recall@{k}"] = h / n_test
        out[f"NDCG@{k}"] = dcg[:, k - 1] / ideal[m - 1]
        out[f"MAP@{k}"] = ap_sum[:, k - 1] / m.to(torch.float64)
        out[f"MRR@{k}"] = torch.where(first <= k, 1.0 / first, torch.zeros_like(first))
        out[f"Hit@{k}"] = (h > 0).to(torch.float64)
    return out


def _rows(csr: sp.csr_matrix, users: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(local row, column) of the nonzeros of ``csr[users]`` as device tensors."""
    sub = csr[users]
    counts = np.diff(sub.indptr)
    rows = np.repeat(np.arange(len(users)), counts)
    return torch.from_numpy(rows).to(device), torch.from_numpy(sub.indices.astype(np.int64)).to(device)


def _keys(csr: sp.csr_matrix) -> np.ndarray:
    """Sorted ``user * n_items + item`` keys of the nonzeros, for membership by binary search."""
    coo = csr.tocoo()
    return np.sort(coo.row.astype(np.int64) * csr.shape[1] + coo.col.astype(np.int64))


def _cpu_topk(scores: torch.Tensor, batch: np.ndarray, csr: tuple[np.ndarray, np.ndarray], k: int) -> np.ndarray:
    """Top-k item indices per user of a float32 score block, train items (CSR ``indptr, indices``) masked."""
    from sdgar import kernels

    block = np.ascontiguousarray(scores.numpy(), dtype=np.float32)
    top = np.empty((len(batch), k), np.int64)
    kernels.topk_masked(block, batch, csr[0], csr[1], k, top)
    return top


def _hits(top: np.ndarray, batch: np.ndarray, test_keys: np.ndarray, n_items: int) -> torch.Tensor:
    """hits[r, t] = the item at rank t+1 of user batch[r] is a test item (binary search in the sorted keys)."""
    q = batch[:, None] * n_items + top
    pos = np.searchsorted(test_keys, q).clip(max=max(len(test_keys) - 1, 0))
    hits = (test_keys[pos] == q) & (top >= 0) if len(test_keys) else np.zeros(q.shape, bool)  # −1: no item left
    return torch.from_numpy(hits)


def has_bf16_dot() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX-BF16; Linux /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Bf16Ranker:
    """Exact top-k from a bfloat16 candidate GEMM (module docstring): ``user [U, d]``, ``item [I, d]``, ``bias``."""

    def __init__(self, user: torch.Tensor, item: torch.Tensor, bias: torch.Tensor | None, n_candidates: int = 128):
        self.user = user.detach().float().contiguous()
        self.item = item.detach().float().contiguous()
        self.bias = (bias.detach().float() if bias is not None else torch.zeros(len(item))).contiguous()
        # the bias rides in the GEMM as an extra column (user side 1)
        self.item_bf16 = torch.cat([self.item, self.bias[:, None]], 1).to(torch.bfloat16)
        self.q_max = float(self.item.norm(dim=1).max()) if len(item) else 0.0
        self.b_max = float(self.bias.abs().max()) if len(item) else 0.0
        self.n_candidates = n_candidates
        self.fallbacks = 0

    def topk(self, batch: np.ndarray, csr: tuple[np.ndarray, np.ndarray], k: int) -> np.ndarray:
        from sdgar import kernels

        n_items = self.item.shape[0]
        n_cand = min(max(self.n_candidates, k), n_items)
        users = torch.from_numpy(batch)
        u_aug = torch.cat([self.user[users], torch.ones(len(batch), 1)], 1).to(torch.bfloat16)
        approx = (u_aug @ self.item_bf16.T).view(torch.int16).numpy()
        cand = np.empty((len(batch), n_cand), np.int64)
        last = np.empty(len(batch), np.uint16)
        kernels.topk_masked_bf16(approx, batch, csr[0], csr[1], n_cand, cand, last)
        del approx
        last_val = (last.astype(np.uint32) << np.uint32(16)).view(np.float32)
        top = np.empty((len(batch), k), np.int64)
        ok = np.zeros(len(batch), np.bool_)
        kernels.rescore_topk(self.user.numpy(), self.item.numpy(), self.bias.numpy(), batch, cand, last_val,
                             self.q_max, self.b_max, k, top, ok)
        bad = np.flatnonzero(~ok)
        if len(bad):  # the bound did not prove these users' top k: exact float32 scores for them
            self.fallbacks += len(bad)
            rows = batch[bad]
            scores = torch.addmm(self.bias, self.user[torch.from_numpy(rows)], self.item.T)
            top[bad] = _cpu_topk(scores, rows, csr, k)
        return top


def _factors(scorer: Scorer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """The factors behind a scorer that is a :class:`FactorScorer` or a model's plain ``Recommender.scores``."""
    from sdgar.models.base import Recommender

    if isinstance(scorer, FactorScorer):
        return scorer.user, scorer.item, scorer.bias
    owner = getattr(scorer, "__self__", None)
    if isinstance(owner, Recommender) and getattr(scorer, "__func__", None) is Recommender.scores:
        return owner.factors()
    return None


@torch.no_grad()
def top_k(scorer: Scorer, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
          device: torch.device | str = "cpu", chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores for ``users`` over all items, with ``exclude``'s items masked to −∞."""
    device = torch.device(device)
    all_items, all_scores = [], []
    for start in range(0, len(users), chunk):
        batch = np.asarray(users[start:start + chunk], dtype=np.int64)
        scores = scorer(torch.from_numpy(batch).to(device)).float()
        if exclude is not None:
            r, c = _rows(exclude, batch, device)
            scores[r, c] = -torch.inf
        val, idx = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        all_items.append(idx.cpu().numpy())
        all_scores.append(val.cpu().numpy())
    if not all_items:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return np.concatenate(all_items), np.concatenate(all_scores)


@torch.no_grad()
def evaluate(scorer: Scorer, train: sp.csr_matrix, test: sp.csr_matrix, cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
             device: torch.device | str = "cpu", chunk: int = 2048, users: np.ndarray | None = None,
             per_user: bool = False, bf16: bool | None = None) -> dict[str, float] | dict[str, np.ndarray]:
    """Full-ranking metrics over every user with at least one test item (or over ``users``).

    ``scorer(users)`` returns ``[len(users), n_items]`` scores on ``device``. The user × item matrix is never
    materialised: users are processed ``chunk`` at a time (memory ≈ chunk × n_items × 5 bytes).
    With ``per_user`` the per-user arrays are returned instead of the means. ``bf16``: the bfloat16 candidate GEMM
    for factor scorers on the CPU (None: where the CPU has bfloat16 dot products; the ranking is exact either way).
    """
    device = torch.device(device)
    cutoffs = sorted({int(k) for k in cutoffs})
    if not cutoffs or cutoffs[0] < 1:
        raise ValueError(f"cutoffs must be positive integers, got {cutoffs}")
    n_test_all = np.diff(test.indptr)
    if users is None:
        users = np.flatnonzero(n_test_all > 0)
    users = np.asarray(users, dtype=np.int64)
    n_items = test.shape[1]
    kmax = min(max(cutoffs), n_items)
    sums: dict[str, torch.Tensor] = {}
    parts: dict[str, list[np.ndarray]] = {}
    test_keys = _keys(test) if device.type == "cpu" else None
    ranker = None
    if device.type == "cpu":
        csr = train.tocsr()
        if not csr.has_sorted_indices:
            csr = csr.copy()
            csr.sort_indices()
        csr_arrays = (csr.indptr.astype(np.int64), csr.indices.astype(np.int64))
        factors = _factors(scorer) if bf16 is not False and (bf16 or has_bf16_dot()) else None
        if factors is not None and factors[0].device.type == "cpu":
            ranker = Bf16Ranker(*factors)
    for start in range(0, len(users), chunk):
        batch = users[start:start + chunk]
        if ranker is not None:  # bfloat16 candidates, exact float32 top k (module docstring)
            hits = _hits(ranker.topk(batch, csr_arrays, kmax), batch, test_keys, n_items)
            scores = None
        elif device.type == "cpu":  # numba: mask + partial top-k in one parallel pass, hits by binary search
            scores = scorer(torch.from_numpy(batch).to(device)).float()
            hits = _hits(_cpu_topk(scores, batch, csr_arrays, kmax), batch, test_keys, n_items)
        else:
            scores = scorer(torch.from_numpy(batch).to(device)).float()
            r, c = _rows(train, batch, device)
            scores[r, c] = -torch.inf
            top = torch.topk(scores, kmax, dim=1).indices
            is_test = torch.zeros(len(batch), n_items, dtype=torch.bool, device=device)
            r, c = _rows(test, batch, device)
            is_test[r, c] = True
            hits = is_test.gather(1, top)
            del is_test
        del scores
        n_test = torch.from_numpy(n_test_all[batch]).to(device)
        # the metrics are ~80 tiny ops per block: on the CPU one torch thread (as the engine's minibatch loop), since
        # a thread barrier per op on a busy box cost 1.17 vs 0.03 s per Gowalla evaluation (2 vs 1 thread, load 2.7)
        with torch_threads(1 if device.type == "cpu" else None):
            for name, value in ranking_metrics(hits, n_test, cutoffs).items():
                if per_user:
                    parts.setdefault(name, []).append(value.cpu().numpy())
                else:
                    sums[name] = sums.get(name, 0.0) + value.sum()
    if per_user:
        return {name: np.concatenate(v) for name, v in parts.items()}
    n = max(len(users), 1)
    return {name: float(v) / n for name, v in sums.items()}


def metric_names(cutoffs: Sequence[int] = DEFAULT_CUTOFFS) -> list[str]:
    return [f"{m}@{k}" for m in METRICS for k in sorted(cutoffs)]


def format_table(results: dict[str, float], cutoffs: Sequence[int] = DEFAULT_CUTOFFS, title: str = "") -> str:
    """Metrics as a small text table: one row per metric, one column per cutoff."""
    cutoffs = sorted(cutoffs)
    lines = [title] if title else []
    lines.append(f"{'':8s}" + "".join(f"{'@' + str(k):>9s}" for k in cutoffs))
    for m in METRICS:
        if f"{m}@{cutoffs[0]}" in results:
            lines.append(f"{m:8s}" + "".join(f"{results[f'{m}@{k}']:9.5f}" for k in cutoffs))
    return "\n".join(lines)
