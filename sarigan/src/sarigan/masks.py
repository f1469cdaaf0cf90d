"""Seeded inpainting masks: free-form strokes and boxes, hole coverage kept inside a range.

Convention everywhere in the package: mask = 1 on the hole (pixels to fill), 0 on visible pixels; [N, 1, R, R].
Mask k of a stream is a function of (seed, k) alone, so evaluation masks are identical for every model and
batch size, and a training stream resumes exactly from its counter.

Free-form masks follow the DeepFill-v2 / CoModGAN recipe in spirit (random thick polylines, our own
rasterizer): strokes are added until the hole covers a target fraction drawn uniformly from ``coverage``; a
stroke that would push it above the range is rejected and a thinner one tried.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from neurips20_common import UserError

MASK_KINDS = ("free-form", "box", "mixed")


@dataclass
class MaskConfig:
    kind: str = "mixed"  # free-form | box | mixed (each mask free-form or box with p = 1/2, as CoModGAN mixes both)
    coverage_min: float = 0.1  # hole fraction of the image, our choice (the paper's protocol is unverified, spec §3)
    coverage_max: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise UserError(f"mask kind must be one of {', '.join(MASK_KINDS)}, got {self.kind!r}")
        if not 0.0 < self.coverage_min <= self.coverage_max < 1.0:
            raise UserError(f"mask coverage needs 0 < min ≤ max < 1, got [{self.coverage_min}, {self.coverage_max}]")


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points (px, py) to the segment a–b."""
    d = b - a
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
    return np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1])


def _stroke(resolution: int, rng: np.random.Generator, max_width: float) -> np.ndarray:
    """One random polyline (2–5 vertices, steps up to half the image, width in [1, max_width] px) as bool [R, R]."""
    grid = np.arange(resolution) + 0.5
    py, px = np.meshgrid(grid, grid, indexing="ij")
    width = rng.uniform(1.0, max(1.0, max_width))
    point = rng.uniform(0, resolution, 2)
    out = np.zeros((resolution, resolution), bool)
    for _ in range(int(rng.integers(1, 5))):
        angle = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.1, 0.5) * resolution
        nxt = np.clip(point + length * np.array([np.cos(angle), np.sin(angle)]), 0, resolution)
        out |= _segment_distance(px, py, point, nxt) <= width / 2
        point = nxt
    return out


def free_form_mask(resolution: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Strokes until coverage ≥ a target ~ U[lo, hi]; strokes that overshoot hi are rejected. bool [R, R]."""
    total = resolution * resolution
    target = rng.uniform(lo, hi)
    mask = np.zeros((resolution, resolution), bool)
    max_width = resolution / 4
    for _ in range(200):
        if mask.sum() >= target * total:
            return mask
        candidate = mask | _stroke(resolution, rng, max_width)
        if candidate.sum() <= hi * total:
            mask = candidate
        else:
            max_width = max(1.0, max_width * 0.7)  # too thick for what is left of the range: thinner strokes
    while mask.sum() < lo * total:  # rare: fill single pixels next to nothing in particular until in range
        mask.flat[rng.integers(total)] = True
    return mask


def box_mask(resolution: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """One axis-aligned rectangle, area fraction in [lo, hi] (aspect ratio 1:2 to 2:1), uniform position."""
    total = resolution * resolution
    for _ in range(100):
        area = rng.uniform(lo, hi) * total
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        h = int(np.clip(round(np.sqrt(area * aspect)), 1, resolution))
        w = int(np.clip(round(area / h), 1, resolution))
        if lo * total <= h * w <= hi * total:
            break
    else:  # the range is narrower than the pixel grid allows at this resolution: nearest feasible area
        h = resolution
        w = int(np.clip(round(0.5 * (lo + hi) * resolution), 1, resolution))
    y, x = int(rng.integers(0, resolution - h + 1)), int(rng.integers(0, resolution - w + 1))
    mask = np.zeros((resolution, resolution), bool)
    mask[y: y + h, x: x + w] = True
    return mask


def make_mask(resolution: int, cfg: MaskConfig, seed: int, index: int) -> np.ndarray:
    """Mask ``index`` of the stream ``seed``: bool [R, R], True on the hole."""
    rng = np.random.default_rng([seed, index])
    kind = cfg.kind if cfg.kind != "mixed" else ("free-form" if rng.random() < 0.5 else "box")
    make = free_form_mask if kind == "free-form" else box_mask
    return make(resolution, rng, cfg.coverage_min, cfg.coverage_max)


def masks(resolution: int, cfg: MaskConfig, seed: int, start: int, n: int) -> torch.Tensor:
    """Masks start … start+n−1 of stream ``seed`` as float [n, 1, R, R] (1 = hole)."""
    arr = np.stack([make_mask(resolution, cfg, seed, start + i) for i in range(n)])
    return torch.from_numpy(arr.astype(np.float32))[:, None]


class MaskStream:
    """The training stream: consecutive masks of one seed, with a counter that checkpoints restore."""

    def __init__(self, resolution: int, cfg: MaskConfig, seed: int) -> None:
        self.resolution, self.cfg, self.seed, self.count = resolution, cfg, seed, 0

    def next(self, n: int) -> torch.Tensor:
        out = masks(self.resolution, self.cfg, self.seed, self.count, n)
        self.count += n
        return out


def _parse_box(spec: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in spec.split(","))
    except ValueError:
        raise UserError(f"--box {spec!r}: expected four numbers x,y,w,h (pixels of the input image)") from None
    if w <= 0 or h <= 0:
        raise UserError(f"--box {spec!r}: width and height must be positive")
    return x, y, w, h


def box_full_size(spec: str, width: int, height: int) -> np.ndarray:
    """``x,y,w,h`` → bool [height, width]: the pixels whose centre lies in the box (the hole at the image's size)."""
    x, y, w, h = _parse_box(spec)
    cx, cy = np.arange(width) + 0.5, np.arange(height) + 0.5
    return ((cy >= y) & (cy <= y + h))[:, None] & ((cx >= x) & (cx <= x + w))[None, :]


def box_from_spec(spec: str, resolution: int, width: int, height: int) -> torch.Tensor:
    """``x,y,w,h`` in the user's image pixels → a [1, 1, R, R] box mask at the model's resolution.

    The image is resized to R on its shorter side and centre-cropped (:func:`sarigan.data._prepare`), so the box
    is mapped through the same transform.
    """
    x, y, w, h = _parse_box(spec)
    k = resolution / min(width, height)
    left, top = (round(width * k) - resolution) / 2, (round(height * k) - resolution) / 2
    x0, y0 = x * k - left, y * k - top
    x1, y1 = x0 + w * k, y0 + h * k
    grid = np.arange(resolution) + 0.5
    inside_x = (grid >= x0) & (grid <= x1)
    inside_y = (grid >= y0) & (grid <= y1)
    mask = inside_y[:, None] & inside_x[None, :]
    if not mask.any():
        raise UserError(f"--box {spec!r} covers no pixel of the {resolution}² model input (image {width}×{height}); "
                        "give the box in pixels of the input image")
    return torch.from_numpy(mask.astype(np.float32))[None, None]
