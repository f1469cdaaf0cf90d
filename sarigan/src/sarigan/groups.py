"""Inspection of the learned channel groups (spec §1.3, §7 item 9): what each grouped layer has learned.

Per grouped layer: the hard assignment channel → group used in the forward pass, the group sizes, τ and β, the
affinity graph S = σ(50·(P − τ)) built from the previous layer's kernel cosine similarity P, its balance against
the target C²/G, the current L_sim / L_bal, how confident the soft assignment is, and whether the groups really
gather similar kernels (mean P within groups vs between groups). A heatmap per layer shows P and S with channels
sorted by group (lines mark the group boundaries).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sarigan.edit import layer_resolution
from sarigan.networks import Generator, StyledConv


def _previous(G: Generator, layer: int) -> StyledConv:
    return G.conv1 if layer == 0 else G.styled_layers()[layer - 1]


def _within_between(matrix: torch.Tensor, index: torch.Tensor) -> tuple[float, float]:
    """Mean of ``matrix`` over same-group pairs (i ≠ j) and over different-group pairs."""
    same = index[:, None] == index[None, :]
    off = ~torch.eye(len(index), dtype=torch.bool)
    within = matrix[same & off]
    between = matrix[~same]
    return (float(within.mean()) if within.numel() else float("nan"),
            float(between.mean()) if between.numel() else float("nan"))


@torch.no_grad()
def inspect_layer(G: Generator, layer: int) -> dict[str, Any]:
    module = G.styled_layers()[layer]
    c = module.conv.weight.shape[1]
    info: dict[str, Any] = {"layer": layer, "resolution": layer_resolution(G, layer), "latent_index": layer + 1,
                            "upsample": module.conv.upsample, "channels": c, "mode": module.mode}
    index = module.group_index()
    if index is None:
        info["grouped"] = False
        return info
    index = index.cpu()
    groups = G.cfg.groups
    sizes = torch.bincount(index, minlength=groups)
    p = _previous(G, layer).conv.kernel_similarity().cpu()
    p_in, p_out = _within_between(p, index)
    info.update(grouped=True, groups=groups, assignment=index.tolist(), sizes=sizes.tolist(),
                nonempty_groups=int((sizes > 0).sum()), largest_group=int(sizes.max()),
                kernel_similarity={"mean": float(p[~torch.eye(c, dtype=torch.bool)].mean()),
                                   "within_groups": p_in, "between_groups": p_out})
    if module.mode == "learned":
        grouping = module.grouping
        s = grouping.affinity(p.to(grouping.theta.device)).cpu()
        a = grouping.soft_assignment().cpu()
        s_in, s_out = _within_between(s, index)
        _, loss_sim, loss_bal = grouping(p.to(grouping.theta.device))
        info.update(tau=float(grouping.tau), beta=float(grouping.beta),
                    affinity={"mean": float(s.mean()), "sum": float(s.sum()), "target_sum": c * c / groups,
                              "fraction_above_half": float((s > 0.5).float().mean()),
                              "within_groups": s_in, "between_groups": s_out},
                    soft_assignment={"mean_max_prob": float(a.max(0).values.mean()),
                                     "mean_entropy": float(-(a * a.clamp_min(1e-12).log()).sum(0).mean())},
                    loss_sim=float(loss_sim), loss_bal=float(loss_bal))
    return info


def inspect_groups(G: Generator) -> list[dict[str, Any]]:
    return [inspect_layer(G, layer) for layer in range(len(G.styled_layers()))]


@torch.no_grad()
def save_heatmap(G: Generator, layer: int, info: dict[str, Any], path: Path) -> Path:
    """P (and S for a learned grouping) with channels sorted by group; white lines mark group boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    module = G.styled_layers()[layer]
    index = torch.tensor(info["assignment"])
    order = torch.argsort(index, stable=True)
    p = _previous(G, layer).conv.kernel_similarity().cpu()
    panels = [("kernel cosine similarity P", p, (-1.0, 1.0), "RdBu_r", "k")]
    if module.mode == "learned":
        s = module.grouping.affinity(p.to(module.grouping.theta.device)).cpu()
        panels.append((f"affinity S = σ(50(P − τ)), τ = {info['tau']:.3f}", s, (0.0, 1.0), "viridis", "w"))
    same = (index[:, None] == index[None, :]).float()
    panels.append(("hard co-assignment", same, (0.0, 1.0), "Greys", "tab:red"))
    bounds = np.cumsum(np.bincount(index.numpy(), minlength=info["groups"]))[:-1]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (title, m, (lo, hi), cmap, line) in zip(axes, panels, strict=True):
        im = ax.imshow(m[order][:, order].numpy(), vmin=lo, vmax=hi, cmap=cmap, interpolation="nearest")
        for b in bounds:
            ax.axhline(b - 0.5, color=line, lw=0.6)
            ax.axvline(b - 0.5, color=line, lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"layer {layer} ({info['resolution']}², {info['mode']}, {info['channels']} ch): sizes {info['sizes']}",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(G: Generator, out_dir: Path) -> tuple[Path, list[Path]]:
    """groups.json and one heatmap PNG per grouped layer in ``out_dir``."""
    infos = inspect_groups(G)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = [save_heatmap(G, info["layer"], info, out_dir / f"layer{info['layer']:02d}_{info['resolution']}px.png")
            for info in infos if info.get("grouped")]
    path = out_dir / "groups.json"
    tmp = path.with_name(".groups.json.tmp")
    tmp.write_text(json.dumps({"grouping": G.cfg.grouping, "groups": G.cfg.groups, "layers": infos}, indent=1))
    tmp.replace(path)
    return path, pngs


def summary_lines(infos: list[dict[str, Any]]) -> list[str]:
    lines = []
    for info in infos:
        head = f"layer {info['layer']:2d} {info['resolution']:4d}px {info['channels']:4d}ch {info['mode']:8s}"
        if not info.get("grouped"):
            lines.append(head + " (ungrouped)")
            continue
        ks = info["kernel_similarity"]
        text = f"{head} sizes {info['sizes']}  P within/between {ks['within_groups']:.3f}/{ks['between_groups']:.3f}"
        if "tau" in info:
            aff = info["affinity"]
            text += f"  τ {info['tau']:.3f} β {info['beta']:.3f} ΣS {aff['sum']:.0f}/{aff['target_sum']:.0f}"
        lines.append(text)
    return lines
