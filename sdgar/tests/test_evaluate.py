import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sdgar.evaluate import Bf16Ranker, FactorScorer, evaluate, format_table, ranking_metrics, top_k


def official_user(ranked: list[int], test: set[int], k: int) -> dict[str, float]:
    """SD-GAR evaluation.py formulas, written out per user."""
    r = [1.0 if i in test else 0.0 for i in ranked[:k]]
    dcg = sum(x / math.log2(n + 2) for n, x in enumerate(r))
    idcg = sum(1.0 / math.log2(n + 2) for n in range(min(len(test), k)))
    first = next((n + 1 for n, i in enumerate(ranked[:k]) if i in test), None)
    hits_at = np.cumsum(r)
    ap = sum(hits_at[n] / (n + 1) for n in range(len(r)) if r[n]) / min(len(test), k)
    return {"P": sum(r) / k, "NDCG": dcg / idcg, "MRR": 1.0 / first if first else 0.0,
            "Recall": sum(r) / len(test), "Hit": float(sum(r) > 0), "MAP": ap}


def test_official_ndcg_edge_cases() -> None:
    # |T_u| = 1, hit at rank 2: NDCG@3 = 1/log2(3)
    m = ranking_metrics(torch.tensor([[0, 1, 0]]), torch.tensor([1]), [3])
    assert m["NDCG@3"].item() == pytest.approx(1 / math.log2(3))
    assert m["MRR@3"].item() == pytest.approx(0.5)
    assert m["P@3"].item() == pytest.approx(1 / 3)
    # |T_u| larger than k: the ideal DCG has k ones (dcg_at_k([1]*|T_u|, k)), so a perfect list scores 1
    m = ranking_metrics(torch.tensor([[1, 1, 1, 0, 0]]), torch.tensor([10]), [3, 5])
    assert m["NDCG@3"].item() == pytest.approx(1.0)
    assert m["NDCG@5"].item() == pytest.approx(sum(1 / math.log2(r + 1) for r in (1, 2, 3)) /
                                               sum(1 / math.log2(r + 1) for r in range(1, 6)))
    assert m["Recall@3"].item() == pytest.approx(0.3)
    # no hit: everything 0
    m = ranking_metrics(torch.tensor([[0, 0, 0]]), torch.tensor([2]), [3])
    assert all(v.item() == 0 for v in m.values())
    # list shorter than the cutoff (fewer items than k): missing ranks are misses
    m = ranking_metrics(torch.tensor([[1, 0]]), torch.tensor([1]), [5])
    assert m["P@5"].item() == pytest.approx(0.2)
    assert m["NDCG@5"].item() == pytest.approx(1.0)


def test_metrics_match_official_formulas_on_random_rankings() -> None:
    rng = np.random.default_rng(0)
    n_items, cutoffs = 60, [3, 5, 10, 20, 50]
    hits, n_test, rankings, tests = [], [], [], []
    for _ in range(40):
        ranked = list(rng.permutation(n_items)[:50])
        test = set(rng.choice(n_items, size=rng.integers(1, 15), replace=False).tolist())
        rankings.append(ranked)
        tests.append(test)
        hits.append([i in test for i in ranked])
        n_test.append(len(test))
    got = ranking_metrics(torch.tensor(hits), torch.tensor(n_test), cutoffs)
    for k in cutoffs:
        for name in ["P", "NDCG", "MRR", "Recall", "Hit", "MAP"]:
            want = [official_user(r, t, k)[name] for r, t in zip(rankings, tests, strict=True)]
            np.testing.assert_allclose(got[f"{name}@{k}"].numpy(), want, rtol=1e-12, atol=1e-12)


def _toy(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix, torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    dense = rng.random((30, 80)) < 0.15
    test_mask = dense & (rng.random((30, 80)) < 0.3)
    train = sp.csr_matrix((dense & ~test_mask).astype(np.float32))
    test = sp.csr_matrix(test_mask.astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    return train, test, torch.randn(30, 4, generator=g), torch.randn(80, 4, generator=g), torch.randn(80, generator=g)


def test_evaluate_masks_train_and_is_chunk_invariant() -> None:
    train, test, user, item, bias = _toy()
    scorer = FactorScorer(user, item, bias)
    a = evaluate(scorer, train, test, chunk=7)
    b = evaluate(scorer, train, test, chunk=1000)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-12)
    # reference: per user, rank all non-train items by score
    scores = (user @ item.T + bias).numpy()
    users = np.flatnonzero(np.diff(test.indptr))
    ref = []
    for u in users:
        s = scores[u].copy()
        s[train[u].indices] = -np.inf
        ranked = list(np.argsort(-s, kind="stable")[:50])
        ref.append(official_user(ranked, set(test[u].indices.tolist()), 10)["NDCG"])
    assert a["NDCG@10"] == pytest.approx(float(np.mean(ref)), abs=1e-9)
    # a model that puts train items first loses nothing: they are masked
    boosted = FactorScorer(user, item, bias)
    top, _ = top_k(boosted, users, 50, exclude=train)
    for row, u in zip(top, users, strict=True):
        assert not set(row.tolist()) & set(train[u].indices.tolist())
    assert "NDCG" in format_table(a)


def _random_split(n_users: int, n_items: int, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items))
    train = sp.csr_matrix((dense < 0.1).astype(np.float32))
    test = sp.csr_matrix(((dense >= 0.1) & (dense < 0.13)).astype(np.float32))
    train = train.tolil()
    train[0, : n_items - 3] = 1.0  # user 0 has only 3 items left: fewer than the largest cutoff
    train = sp.csr_matrix(train)
    test = sp.csr_matrix(test - test.multiply(train))  # disjoint, as every real split
    test.eliminate_zeros()
    return train, test


def test_bf16_candidates_give_the_float32_ranking() -> None:
    """The bfloat16 candidate GEMM + exact rescoring (+ float32 fallback where the bound fails) ranks exactly as the
    float32 path: same per-user metrics, including a user with fewer unmasked items than the largest cutoff."""
    n_users, n_items = 60, 400
    train, test = _random_split(n_users, n_items, 0)
    torch.manual_seed(0)
    scorer = FactorScorer(torch.randn(n_users, 16), torch.randn(n_items, 16), torch.randn(n_items))
    users = np.arange(n_users)
    fast = evaluate(scorer, train, test, users=users, per_user=True, bf16=True, chunk=32)
    exact = evaluate(scorer, train, test, users=users, per_user=True, bf16=False, chunk=32)
    for name in exact:
        np.testing.assert_array_equal(fast[name], exact[name], err_msg=name)


@pytest.mark.parametrize("n_candidates", [50, 128])
def test_bf16_ranker_top_k_is_exact_with_and_without_fallbacks(n_candidates: int) -> None:
    """With as many candidates as k the error bound fails for most users (they are scored again in float32); with
    128 it holds for most: the top 50 equals the float32 top 50 (train items masked) either way."""
    from sdgar import kernels

    n_users, n_items, k = 40, 600, 50
    train, _ = _random_split(n_users, n_items, 1)
    torch.manual_seed(1)
    user, item, bias = torch.randn(n_users, 24), torch.randn(n_items, 24), torch.randn(n_items) * 0.3
    ranker = Bf16Ranker(user, item, bias, n_candidates=n_candidates)
    batch = np.arange(n_users)
    csr = (train.indptr.astype(np.int64), train.indices.astype(np.int64))
    got = ranker.topk(batch, csr, k)
    ref = np.empty((n_users, k), np.int64)
    kernels.topk_masked(torch.addmm(bias, user, item.T).numpy(), batch, csr[0], csr[1], k, ref)
    left = n_items - np.diff(train.indptr)
    for r in range(n_users):
        n = min(k, left[r])
        np.testing.assert_array_equal(got[r, :n], ref[r, :n])
        assert (got[r, n:] == -1).all()
    if n_candidates == k:
        assert ranker.fallbacks > n_users // 2
    else:
        assert ranker.fallbacks < n_users // 2
