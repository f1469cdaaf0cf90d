"""Fréchet distance between Gaussians fitted to two feature sets (spec §5.3), with pytorch-fid's guards.

FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}). Shared by the training-time trend line (random-feature
extractor, :mod:`sarigan.metrics.features`) and FID (Inception features).

Only the trace of (Σ₁Σ₂)^{1/2} is needed, not the matrix: Σ₁Σ₂ is similar to the symmetric PSD matrix
M = Σ₁^{1/2} Σ₂ Σ₁^{1/2}, so Tr (Σ₁Σ₂)^{1/2} = Σ_k √λ_k(M). Two symmetric eigendecompositions (eigh) replace
scipy's Schur-based ``sqrtm`` (seconds instead of minutes at D = 2048; same value to ~1e-8 relative).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

PSD_RTOL = 1e-8  # eigenvalues of Σ₁ above −PSD_RTOL·max|λ| count as round-off of a PSD matrix and are clipped to 0
IMAG_ATOL = 1e-3  # pytorch-fid accepts a complex square root whose imaginary part is below this (numerical noise)


def feature_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of [N, D] features, in float64."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need [N ≥ 2, D] features, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def sqrt_product_eigenvalues(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Principal square roots (complex) of the eigenvalues of Σ₁Σ₂; their sum is Tr (Σ₁Σ₂)^{1/2}.

    Covariances (Σ₁ PSD up to round-off): eigenvalues of the symmetric M = Σ₁^{1/2} Σ₂ Σ₁^{1/2} by eigh.
    Anything else (Σ₁ clearly indefinite, i.e. not a covariance) falls back to the general eigenvalues of Σ₁Σ₂,
    so a truly complex square root still shows up for the imaginary-part check.
    """
    w, v = np.linalg.eigh(sigma1)
    if w.min(initial=0.0) >= -PSD_RTOL * max(np.abs(w).max(initial=0.0), 1e-300):
        root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # Σ₁^{1/2}
        m = root @ sigma2 @ root
        lam = np.linalg.eigvalsh((m + m.T) / 2).astype(np.complex128)
    else:
        lam = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    return np.sqrt(lam)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """FD of N(μ₁, Σ₁) and N(μ₂, Σ₂).

    Guards as in pytorch-fid: if the square root is not finite (or the decomposition fails) retry with eps·I added
    to both covariances; a complex result is accepted when its imaginary parts are below 1e-3 (noise), else raise.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mismatched statistics: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    try:
        roots = sqrt_product_eigenvalues(sigma1, sigma2)
    except np.linalg.LinAlgError:
        roots = np.full(1, np.nan, dtype=np.complex128)
    if not np.isfinite(roots).all():
        warnings.warn(f"FD: singular product of covariances; adding {eps} to the diagonals", stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        roots = sqrt_product_eigenvalues(sigma1 + offset, sigma2 + offset)
    if np.abs(roots.imag).max(initial=0.0) > IMAG_ATOL:
        raise ValueError(f"FD: imaginary component {np.abs(roots.imag).max():.3g} in the square root of Σ₁Σ₂")
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * roots.real.sum())
