"""Fréchet Inception Distance with the standard guards, cached reference statistics, and a recorded protocol.

FID = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}) over the extractor's features (spec §5.3); the math and the
pytorch-fid guards (eps retry, imaginary-part check) are :func:`sarigan.metrics.frechet.frechet_distance`.
KID is reported beside FID when n < 2048 (spec §7 item 11), since FID is strongly biased at small n.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sarigan.metrics.features import FeatureExtractor, cache_root
from sarigan.metrics.frechet import feature_stats, frechet_distance
from sarigan.metrics.kid import kid

FID_MIN_SAMPLES = 2048  # below this FID is strongly biased; KID is reported beside it (spec §5.3)


@dataclass
class GaussianStats:
    mu: np.ndarray  # [D]
    sigma: np.ndarray  # [D, D]
    n: int

    @classmethod
    def from_features(cls, feats: np.ndarray) -> GaussianStats:
        mu, sigma = feature_stats(feats)
        return cls(mu, sigma, int(np.shape(feats)[0]))

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, mu=self.mu, sigma=self.sigma, n=self.n, meta=json.dumps(meta, sort_keys=True))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> tuple[GaussianStats, dict[str, Any]]:
        with np.load(path) as f:
            return cls(f["mu"], f["sigma"], int(f["n"])), json.loads(str(f["meta"]))


def fid_from_stats(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, eps)


# ---------------------------------------------------------------------------------------------------------------
# Reference statistics cached per (dataset, resolution, extractor protocol, n)
# ---------------------------------------------------------------------------------------------------------------
def _key(meta: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]


def reference_features(images: torch.Tensor, extractor: FeatureExtractor, n: int, seed: int = 0) -> np.ndarray:
    """Features of n real images drawn without replacement (all when fewer), uint8 [N, 3, R, R] in."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(images.shape[0], generator=g)[: min(n, images.shape[0])]
    return extractor.extract(images[idx])


def reference_stats(images: torch.Tensor, dataset: str, extractor: FeatureExtractor, n: int,
                    cache_dir: Path | None = None, seed: int = 0) -> tuple[GaussianStats, np.ndarray | None, bool]:
    """Reference μ, Σ (and the features, for KID) for ``dataset``; cached on disk keyed by name and protocol.

    Returns (stats, features or None when served from the cache without them, cache hit?).
    """
    meta = {"dataset": dataset, "resolution": int(images.shape[-1]), "n": int(min(n, images.shape[0])),
            "seed": seed, "protocol": extractor.protocol()}
    path = cache_root(cache_dir) / "fid_stats" / f"{dataset}-{images.shape[-1]}-{_key(meta)}.npz"
    feats_path = path.with_suffix(".feats.npy")
    if path.is_file():
        try:
            stats, stored = GaussianStats.load(path)
            if stored == meta:
                feats = np.load(feats_path) if feats_path.is_file() else None
                return stats, feats, True
        except (OSError, ValueError, KeyError):
            pass  # a corrupt cache entry is recomputed and overwritten
    feats = reference_features(images, extractor, n, seed)
    stats = GaussianStats.from_features(feats)
    stats.save(path, meta)
    np.save(feats_path, feats.astype(np.float32))
    return stats, feats, False


# ---------------------------------------------------------------------------------------------------------------
# FID / KID of a generator
# ---------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate_uint8(G: torch.nn.Module, n: int, batch: int = 64, psi: float = 1.0, seed: int = 0,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """n samples of G as uint8 [n, 3, R, R] (quantized like real images, as in the standard protocol)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for lo in range(0, n, batch):
        z = torch.randn(min(batch, n - lo), G.cfg.z_dim, generator=g).to(device)
        img = G(z, psi=psi)
        out.append(((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(out)


def evaluate_fid(G: torch.nn.Module, real_images: torch.Tensor, dataset: str, extractor: FeatureExtractor,
                 n: int = 2048, psi: float = 1.0, seed: int = 0, batch: int = 64, with_kid: bool | None = None,
                 cache_dir: Path | None = None, device: torch.device | str = "cpu",
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """FID (and KID when n < 2048, or when asked) of G's samples against ``real_images``.

    The returned record carries the full protocol (extractor, resize, range, n, ψ, seeds) next to the scores.
    """
    t0 = time.perf_counter()
    ref, ref_feats, hit = reference_stats(real_images, dataset, extractor, n, cache_dir)
    if log:
        log(f"reference stats for {dataset}: {'cache hit' if hit else 'computed'} ({ref.n} images)")
    fake = generate_uint8(G, n, batch, psi, seed + 1, device)
    fake_feats = extractor.extract(fake)
    fid = fid_from_stats(ref, GaussianStats.from_features(fake_feats))
    record: dict[str, Any] = {"fid": fid, "n_fake": n, "n_real": ref.n, "psi": psi, "seed": seed,
                              "dataset": dataset, "resolution": int(real_images.shape[-1]),
                              "protocol": extractor.protocol()}
    if with_kid is None:
        with_kid = n < FID_MIN_SAMPLES
    if with_kid:
        if ref_feats is None:
            ref_feats = reference_features(real_images, extractor, n)
        k_mean, k_std = kid(ref_feats, fake_feats, seed=seed)
        record.update(kid=k_mean, kid_std=k_std)
    if n < FID_MIN_SAMPLES:
        record["note"] = f"n={n} < {FID_MIN_SAMPLES}: FID is biased upwards at this n; compare KID"
    record["seconds"] = time.perf_counter() - t0
    return record

