"""Figures of a decomposition run: mask maps over frames and the sub-reward vs raw-reward scatter (spec §6.5, §9)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def mask_maps(masks: np.ndarray, fmap_shape: tuple[int, int, int]) -> np.ndarray:
    """(B, K, C·H·W) feature masks -> (B, K, H, W) maps: the mean over the C feature channels (spec §6.5)."""
    b, k, _ = masks.shape
    return masks.reshape(b, k, *fmap_shape).mean(2)


def _upsample(m: np.ndarray, size: int = 84) -> np.ndarray:
    reps = int(np.ceil(size / m.shape[0]))
    up = np.kron(m, np.ones((reps, reps)))
    off = (up.shape[0] - size) // 2
    return up[off:off + size, off:off + size]


def plot_mask_maps(frames: np.ndarray, maps: np.ndarray, titles: list[str], path: str | Path,
                   channel_names: list[str] | None = None, saliency: np.ndarray | None = None) -> Path:
    """One row per example: the frame, then each channel's 7×7 mask map (upsampled, red) over it and, when given,
    each channel's input saliency |∂r̂_k/∂s| (84×84, red). Each map is stretched over its own min–max range
    (written in the title), so spatial structure shows even when a mask is nearly flat."""
    n, k = maps.shape[:2]
    names = channel_names or [f"channel {i}" for i in range(k)]
    cols = 1 + k * (2 if saliency is not None else 1)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.3 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(frames[i], cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_title(titles[i], fontsize=8)
        panels = [(f"{names[j]} mask", _upsample(maps[i, j], frames.shape[-1]), maps[i, j]) for j in range(k)]
        if saliency is not None:
            panels += [(f"{names[j]} |dr/ds|", saliency[i, j], saliency[i, j]) for j in range(k)]
        for c, (label, img, raw) in enumerate(panels):
            ax = axes[i, c + 1]
            lo, hi = float(raw.min()), float(raw.max())
            ax.imshow(frames[i], cmap="gray", vmin=0, vmax=255)
            ax.imshow((img - lo) / max(hi - lo, 1e-12), cmap="Reds", alpha=0.55, vmin=0, vmax=1)
            rng = f"{lo:.2f}-{hi:.2f}" if "mask" in label else f"max {hi:.2g}"
            ax.set_title(f"{label} ({rng})", fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_scatter(sub_rewards: np.ndarray, raw: np.ndarray, path: str | Path, seed: int = 0) -> Path:
    """r̂_k against the raw reward (x jittered), one panel per channel."""
    k = sub_rewards.shape[1]
    rng = np.random.default_rng(seed)
    values = np.unique(raw)
    pos = {v: i for i, v in enumerate(values)}
    x = np.array([pos[v] for v in raw], float) + rng.uniform(-0.25, 0.25, len(raw))
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.2), squeeze=False, sharey=True)
    for j in range(k):
        ax = axes[0, j]
        ax.scatter(x, sub_rewards[:, j], s=4, alpha=0.4)
        ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        ax.set_xlabel("raw reward")
        ax.set_title(f"channel {j}")
        ax.axhline(0, color="gray", lw=0.5)
    axes[0, 0].set_ylabel("learned sub-reward r̂_k")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
