"""Inpainting scores: L1 on the hole, PSNR (whole image and hole), FID/KID of completions against the truths.

Images are compared in [0, 1] pixel units (uint8 / 255), so an L1 of 0.1 is 25.5 grey levels; PSNR uses peak 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from sarigan.metrics.features import FeatureExtractor
from sarigan.metrics.fid import FID_MIN_SAMPLES, GaussianStats, fid_from_stats
from sarigan.metrics.kid import kid


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [−1, 1] → float64 [0, 1]."""
    if images.dtype == torch.uint8:
        return images.double() / 255.0
    return (images.double().clamp(-1, 1) + 1) / 2


def masked_l1(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image: mean |pred − truth| over the hole's pixels and channels ([0, 1] units). mask [N, 1, H, W], 1 = hole.

    An image without hole pixels scores 0. Differentiable when pred is a float tensor.
    """
    if pred.dtype == torch.uint8 or truth.dtype == torch.uint8:
        pred, truth = _unit(pred), _unit(truth)
    else:
        pred, truth = (pred.clamp(-1, 1) + 1) / 2, (truth + 1) / 2
    m = mask.to(pred.dtype).expand_as(pred)
    return ((pred - truth).abs() * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)


def psnr(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per image PSNR in dB with peak 1, over the whole image, or over the hole when ``mask`` is given."""
    p, t = _unit(pred), _unit(truth)
    sq = (p - t).pow(2)
    if mask is None:
        mse = sq.flatten(1).mean(1)
    else:
        m = mask.double().expand_as(sq)
        mse = (sq * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def completion_scores(completions: torch.Tensor, truths: torch.Tensor, masks: torch.Tensor,
                      extractor: FeatureExtractor | None = None, seed: int = 0) -> dict[str, Any]:
    """Mean ± std over images of hole L1, PSNR and hole PSNR; FID and KID of completions vs truths (uint8 in)."""
    l1 = masked_l1(completions, truths, masks)
    whole, hole = psnr(completions, truths), psnr(completions, truths, masks)
    out: dict[str, Any] = {"n": int(completions.shape[0]),
                           "l1_hole": float(l1.mean()), "l1_hole_std": float(l1.std()),
                           "psnr": float(whole.mean()), "psnr_std": float(whole.std()),
                           "psnr_hole": float(hole.mean()), "psnr_hole_std": float(hole.std()),
                           "coverage": float(masks.float().mean())}
    if extractor is not None:
        fake, real = extractor.extract(completions), extractor.extract(truths)
        out["fid"] = fid_from_stats(GaussianStats.from_features(real), GaussianStats.from_features(fake))
        out["kid"], out["kid_std"] = kid(real, fake, seed=seed)
        out["protocol"] = extractor.protocol()
        if completions.shape[0] < FID_MIN_SAMPLES:
            out["note"] = f"n={completions.shape[0]} < {FID_MIN_SAMPLES}: FID is biased upwards at this n; compare KID"
    if not all(math.isfinite(v) for v in (out["l1_hole"], out["psnr"])):
        raise ValueError("non-finite inpainting scores")
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value) over seeds."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
