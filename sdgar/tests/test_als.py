"""WMF/ALS (models/als.py): solves against a dense reference, the objective, and learning planted structure."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sdgar.models.als import WMF, ALSConfig, _row_batches, solve_side
from sdgar.models.base import TrainData


def _random_data(n_users: int = 30, n_items: int = 40, density: float = 0.15, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    m = (rng.random((n_users, n_items)) < density).astype(np.float32)
    m[0] = 0.0          # a user with no positives
    m[1, :] = 1.0       # a user with every item (widest row)
    return TrainData(sp.csr_matrix(m))


def _dense_solve(y: np.ndarray, r: np.ndarray, cfg: ALSConfig) -> np.ndarray:
    """HKV eq. 4 with the full diagonal C_u (no YᵀY trick), in float64."""
    conf = cfg.alpha * r + (1.0 if cfg.confidence == "one_plus_alpha" else 0.0)
    c_full = np.where(r > 0, conf, 1.0)
    out = np.zeros((r.shape[0], y.shape[1]))
    for u in range(r.shape[0]):
        a = y.T @ (c_full[u][:, None] * y) + cfg.reg * np.eye(y.shape[1])
        out[u] = np.linalg.solve(a, y.T @ (c_full[u] * (r[u] > 0)))
    return out


@pytest.mark.parametrize("confidence", ["one_plus_alpha", "alpha"])
def test_cholesky_matches_dense_reference(confidence: str) -> None:
    data = _random_data()
    cfg = ALSConfig(factors=6, alpha=5.0, reg=0.1, confidence=confidence, solver="cholesky", batch_entries=64,
                    max_batch_rows=4)
    model = WMF(data.n_users, data.n_items, cfg, torch.Generator().manual_seed(0)).double()
    users, _ = model._prepare(data)
    assert len(users.batches) > 3  # the batching is exercised
    solve_side(model.user_factors, model.item_factors, users, cfg)
    ref = _dense_solve(model.item_factors.numpy(), data.matrix.toarray(), cfg)
    np.testing.assert_allclose(model.user_factors.numpy(), ref, rtol=1e-6, atol=1e-8)
    assert np.abs(ref[0]).max() == 0.0  # no positives → zero factors


def test_cg_converges_to_exact_solution() -> None:
    data = _random_data(seed=1)
    exact = ALSConfig(factors=5, alpha=3.0, reg=0.1, solver="cholesky")
    cg = ALSConfig(factors=5, alpha=3.0, reg=0.1, solver="cg", cg_steps=40)
    a = WMF(data.n_users, data.n_items, exact, torch.Generator().manual_seed(0)).double()
    b = WMF(data.n_users, data.n_items, cg, torch.Generator().manual_seed(0)).double()
    solve_side(a.user_factors, a.item_factors, a._prepare(data)[0], exact)
    solve_side(b.user_factors, b.item_factors, b._prepare(data)[0], cg)
    np.testing.assert_allclose(b.user_factors.numpy(), a.user_factors.numpy(), atol=1e-7)


def test_loss_matches_brute_force_and_decreases() -> None:
    data = _random_data(seed=2)
    cfg = ALSConfig(factors=4, alpha=10.0, reg=0.05, solver="cholesky")
    model = WMF(data.n_users, data.n_items, cfg, torch.Generator().manual_seed(3)).double()
    r = data.matrix.toarray()
    x, y = model.user_factors.numpy(), model.item_factors.numpy()
    c = np.where(r > 0, 1.0 + cfg.alpha * r, 1.0)
    brute = (c * ((r > 0) - x @ y.T) ** 2).sum() + cfg.reg * ((x**2).sum() + (y**2).sum())
    assert model.loss(data) == pytest.approx(brute / data.n_interactions, rel=1e-9)
    losses = [model.train_epoch(data, torch.Generator())["loss"] for _ in range(6)]
    # each exact half-sweep minimises the objective over one block, so it can never go up
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(losses))
    assert losses[-1] < 0.5 * brute / data.n_interactions


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_learns_planted_blocks(solver: str) -> None:
    """Two communities; a held-out in-community item must outrank every out-of-community item."""
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    block = (np.arange(n_users)[:, None] < 20) == (np.arange(n_items)[None, :] < 15)
    keep = rng.random((n_users, n_items)) < 0.6
    train = (block & keep).astype(np.float32)
    held = block & ~keep
    data = TrainData(sp.csr_matrix(train))
    model = WMF(n_users, n_items, ALSConfig(factors=2, alpha=2.0, reg=1.0, solver=solver),
                torch.Generator().manual_seed(0))
    for _ in range(10):
        model.train_epoch(data, torch.Generator())
    scores = model.scores(torch.arange(n_users)).numpy()
    for u in range(n_users):
        if held[u].any():
            assert scores[u, held[u]].min() > scores[u, ~block[u]].max()


def test_row_batches_cover_rows_and_bound_padding() -> None:
    degree = np.array([0, 5, 1, 1, 300, 2, 7, 7, 40, 3])
    order, batches = _row_batches(degree, budget=50, max_rows=3)
    seen = np.concatenate([order[a:b] for a, b in batches])
    assert sorted(seen.tolist()) == list(range(len(degree)))
    for a, b in batches:
        deg = degree[order[a:b]]
        assert b - a <= 3
        assert (b - a == 1) or ((b - a) * deg.max() <= 50 and deg.max() <= 2 * deg.min() + 8)
