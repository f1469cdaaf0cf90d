import numpy as np
import pytest

from sarigan.metrics.kid import kid, mmd2_unbiased


def test_mmd2_matches_a_direct_double_sum() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(1.0, 1.0, size=(9, 5))

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 5 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(9)) / (7 * 9)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two() -> None:
    rng = np.random.default_rng(1)
    same = [mmd2_unbiased(rng.normal(size=(50, 8)), rng.normal(size=(50, 8))) for _ in range(200)]
    shifted = mmd2_unbiased(rng.normal(size=(50, 8)), rng.normal(0.5, 1.0, size=(50, 8)))
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))  # unbiased: mean ≈ 0 (negative values occur)
    assert min(same) < 0
    assert shifted > 10 * np.std(same)


def test_kid_subsets_give_a_spread() -> None:
    rng = np.random.default_rng(2)
    mean, std = kid(rng.normal(size=(100, 8)), rng.normal(0.3, 1.0, size=(100, 8)), n_subsets=20)
    assert mean > 0 and std > 0
