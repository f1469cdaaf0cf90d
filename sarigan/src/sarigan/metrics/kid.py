"""Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel, averaged over random subsets.

k(x, y) = (xᵀy / D + 1)³ (Bińkowski et al. 2018). Unlike FID, the estimator is unbiased, so it is meaningful at
small n (spec §5.3); we report it beside FID whenever n < 2048.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> np.ndarray:
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between samples x [m, D] and y [n, D] (the diagonals of K_xx and K_yy are left out)."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples on each side")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    term_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * kxy.mean())


def kid(real: np.ndarray, fake: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID mean and standard deviation over ``n_subsets`` random subsets per side.

    The subset size is min(subset_size, n/2), so that the subsets differ and the std says something at small n.
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    m = max(2, min(subset_size, real.shape[0] // 2, fake.shape[0] // 2))
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(real[rng.choice(real.shape[0], m, replace=False)],
                            fake[rng.choice(fake.shape[0], m, replace=False)]) for _ in range(n_subsets)]
    return float(np.mean(values)), float(np.std(values))
