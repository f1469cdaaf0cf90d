"""Figures of a decomposition run (spec §6.5, §9): masks.png (mask maps and input saliency per example) and
scatter.png (learned sub-rewards against the raw reward)."""

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


def _upsample(m: np.ndarray, size: int) -> np.ndarray:
    reps = int(np.ceil(size / m.shape[0]))
    up = np.kron(m, np.ones((reps, reps)))
    off = (up.shape[0] - size) // 2
    return up[off:off + size, off:off + size]


def _range(a: np.ndarray) -> str:
    return f"{float(a.min()):.3g}–{float(a.max()):.3g}"


def plot_mask_maps(frames: np.ndarray | None, masks: np.ndarray, titles: list[str], path: str | Path,
                   saliency: np.ndarray | None = None, channel_names: list[str] | None = None) -> Path:
    """One row per example transition.

    Image observations (``frames`` (n, H, W) given, ``masks`` (n, K, h, w) maps, ``saliency`` (n, K, H, W)): the
    frame, each channel's mask map over it, each channel's input saliency |∂r̂_k/∂s| over it. Vector observations
    (``frames`` None, ``masks`` (n, K, N), ``saliency`` (n, K, n_obs)): the masks and the saliency as K-row heat maps.

    Colour scales are shared within a row: masks on their absolute scale [0, 1] (a sigmoid), saliency on
    [0, the row's largest value]; one colour bar per row and kind, and each panel's own value range in its title.
    A mask that is 0.50 everywhere looks flat, not stretched to full contrast.
    """
    n, k = masks.shape[:2]
    names = channel_names or [f"ch {i}" for i in range(k)]
    image = frames is not None
    if image:
        cols = 1 + k * (2 if saliency is not None else 1)
        fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols + 0.8, 2.4 * n), squeeze=False)
    else:
        cols = 2 if saliency is not None else 1
        fig, axes = plt.subplots(n, cols, figsize=(5.0 * cols, (0.5 * k + 1.6) * n), squeeze=False,
                                 gridspec_kw={"hspace": 0.8})
    for i in range(n):
        row = axes[i]
        sal_hi = float(saliency[i].max()) if saliency is not None else 0.0
        sal_hi = sal_hi if sal_hi > 0 else 1.0
        if image:
            size = frames.shape[-1]
            row[0].imshow(frames[i], cmap="gray", vmin=0, vmax=255)
            row[0].set_title(titles[i], fontsize=8)
            im_mask = im_sal = None
            for j in range(k):
                ax = row[1 + j]
                ax.imshow(frames[i], cmap="gray", vmin=0, vmax=255)
                im_mask = ax.imshow(_upsample(masks[i, j], size), cmap="Reds", alpha=0.6, vmin=0, vmax=1)
                ax.set_title(f"{names[j]} mask {_range(masks[i, j])}", fontsize=7)
                if saliency is not None:
                    ax = row[1 + k + j]
                    ax.imshow(frames[i], cmap="gray", vmin=0, vmax=255)
                    im_sal = ax.imshow(saliency[i, j], cmap="Reds", alpha=0.6, vmin=0, vmax=sal_hi)
                    ax.set_title(f"{names[j]} |dr/ds| {_range(saliency[i, j])}", fontsize=7)
            fig.colorbar(im_mask, ax=list(row[1:1 + k]), fraction=0.03, pad=0.01, label="mask")
            if im_sal is not None:
                fig.colorbar(im_sal, ax=list(row[1 + k:]), fraction=0.03, pad=0.01, label="|dr/ds|")
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
        else:
            im = row[0].imshow(masks[i], cmap="Reds", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            row[0].set_yticks(range(k), names, fontsize=7)
            row[0].set_title(f"{titles[i]}: masks {_range(masks[i])}", fontsize=8)
            fig.colorbar(im, ax=row[0], fraction=0.04, pad=0.01, label="mask")
            if saliency is not None:
                im = row[1].imshow(saliency[i], cmap="Reds", vmin=0, vmax=sal_hi, aspect="auto",
                                   interpolation="nearest")
                row[1].set_yticks(range(k), names, fontsize=7)
                row[1].set_xlabel("observation feature", fontsize=7)
                row[1].set_title(f"|dr/ds| {_range(saliency[i])}", fontsize=8)
                fig.colorbar(im, ax=row[1], fraction=0.04, pad=0.01, label="|dr/ds|")
    path = Path(path)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_scatter(sub_rewards: np.ndarray, raw: np.ndarray, path: str | Path, title: str = "",
                 seed: int = 0) -> Path:
    """r̂_k against the raw reward (x jittered), one panel per channel; ``title`` names the run and its balanced
    purity."""
    k = sub_rewards.shape[1]
    rng = np.random.default_rng(seed)
    values = np.unique(raw)
    pos = {v: i for i, v in enumerate(values)}
    x = np.array([pos[v] for v in raw], float) + rng.uniform(-0.25, 0.25, len(raw))
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.5), squeeze=False, sharey=True)
    for j in range(k):
        ax = axes[0, j]
        ax.scatter(x, sub_rewards[:, j], s=4, alpha=0.4)
        ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        ax.set_xlabel("raw reward")
        ax.set_title(f"channel {j}")
        ax.axhline(0, color="gray", lw=0.5)
    axes[0, 0].set_ylabel("learned sub-reward r̂_k")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
