import numpy as np
import pytest
import torch
from scipy import stats

from sdgar.models.generator import DecomposableGenerator
from sdgar.sampling import AliasTables, PositiveSet, sample_rejecting, uniform_items


def test_alias_chi_square_1000_way() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.rand(1000, generator=g, dtype=torch.float64) ** 2
    tables = AliasTables.build(w)
    draws = tables.sample(torch.zeros(1_000_000, dtype=torch.long), g)
    counts = np.bincount(draws.numpy(), minlength=1000)
    expected = (w / w.sum()).numpy() * 1_000_000
    assert stats.chisquare(counts, expected).pvalue > 1e-3


@pytest.mark.parametrize(("n_tables", "n"), [(1, 1), (3, 2), (5, 7), (64, 300), (2, 5000)])
def test_alias_tables_are_exact(n_tables: int, n: int) -> None:
    g = torch.Generator().manual_seed(n)
    w = torch.rand(n_tables, n, generator=g, dtype=torch.float64) ** 4
    w[0, : n // 2] = 0.0  # zero-probability outcomes
    p = w / w.sum(1, keepdim=True)
    assert torch.allclose(AliasTables.build(w).pmf(), p, atol=1e-7, rtol=0)  # float32 tables


def test_packed_alias_tables_keep_the_distribution() -> None:
    """kernels.pack_alias: keep threshold round(prob·2³²) and alias in one uint64; its pmf is the tables' to 2⁻³²."""
    from sdgar.kernels import pack_alias

    w = torch.rand(4, 37, dtype=torch.float64) ** 3
    t = AliasTables.build(w)
    packed = pack_alias(t.prob.numpy(), t.alias.numpy())
    keep = (packed >> np.uint64(31)).astype(np.float64) / 2**32
    alias = (packed & np.uint64(0x7FFFFFFF)).astype(np.int64)
    assert (alias == t.alias.numpy()).all()
    pmf = np.zeros((4, 37))
    for r in range(4):
        np.add.at(pmf[r], np.arange(37), keep[r] / 37)
        np.add.at(pmf[r], alias[r], (1 - keep[r]) / 37)
    np.testing.assert_allclose(pmf, (w / w.sum(1, keepdim=True)).numpy(), atol=1e-6)


def test_alias_degenerate_and_uniform() -> None:
    assert torch.allclose(AliasTables.build(torch.ones(2, 5)).pmf(), torch.full((2, 5), 0.2, dtype=torch.float64))
    one_hot = AliasTables.build(torch.tensor([0.0, 0.0, 3.0, 0.0]))
    draws = one_hot.sample(torch.zeros(1000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert (draws == 2).all()
    with pytest.raises(ValueError):
        AliasTables.build(torch.tensor([1.0, -1.0]))


def test_two_level_draw_equals_x_dot_y() -> None:
    torch.manual_seed(0)
    gen_model = DecomposableGenerator(n_users=5, n_items=7, n_components=3)
    ut, it = gen_model._tables()
    q = gen_model.x @ gen_model.y.T  # Q(j|u) = x_u · y_j
    assert torch.allclose(q.sum(1), torch.ones(5, dtype=torch.float64))
    # exact: the composition of the two tables' distributions
    composed = ut.pmf() @ it.pmf()
    assert torch.allclose(composed, q, atol=1e-7)
    # empirical
    g = torch.Generator().manual_seed(3)
    n = 200_000
    users = torch.arange(5).repeat_interleave(n)
    items = gen_model.sample(users, g).view(5, n)
    for u in range(5):
        counts = np.bincount(items[u].numpy(), minlength=7)
        assert stats.chisquare(counts, q[u].numpy() * n).pvalue > 1e-4
    # log_q agrees with the tables
    u, j = torch.tensor([0, 4, 2]), torch.tensor([6, 0, 3])
    assert torch.allclose(gen_model.log_q(u, j).double(), q[u, j].log(), atol=1e-5)


def test_rejection_never_returns_positives() -> None:
    g = torch.Generator().manual_seed(0)
    users = torch.tensor([0, 0, 0, 1, 1])
    items = torch.tensor([0, 1, 2, 3, 4])
    positives = PositiveSet(users, items, n_items=6)
    assert positives.contains(torch.tensor([0, 0, 1]), torch.tensor([2, 3, 3])).tolist() == [True, False, True]
    query = torch.tensor([0] * 500 + [1] * 500)
    drawn, rejected = sample_rejecting(uniform_items(6, g), query, positives)
    assert not positives.contains(query, drawn).any()
    assert rejected > 0
