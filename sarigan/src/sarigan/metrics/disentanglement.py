"""Disentanglement of the channel groups on the shapes data: does one group move one factor? (spec §1.0, §7 item 9)

The paper's claim, made measurable. A factor predictor (:class:`~sarigan.metrics.features.LabelNet`) is trained
in-package on real shapes (shape, hue, x, y, scale, background hue). For every edit unit (layer l, channel group g),
over many seeds, the group's styles are scaled by (1 + δ) for each δ in ``deltas`` (on a grouped layer this is
exactly s_g[g] ← (1 + δ)·s_g[g], the AdaGN scalar; see :mod:`sarigan.edit`, mode ``gain``), and the predicted factors
of the edited image are compared with those of the unedited one. The effect of unit u on factor f is

    E[u, f] = mean over seeds and δ of d_f(pred(edited), pred(base)) / mean over random real pairs of d_f,

so 1.0 means "changes f as much as swapping in an unrelated image"; d_f is total variation for the shape class,
circular distance for hues and |Δ| otherwise. The concentration of factor f is the normalized gap between the two
units that move it most, (e₁ − e₂)/e₁ ∈ [0, 1] (1 = a single group controls f); the score is its mean over factors.

Edit units: ``grouping=learned | uniform`` use the model's groups; ``none`` (StyleGAN2) has none, so random channel
subsets of the same size C/G are used. ``units='random'`` gives that control for any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sarigan.edit import style_edit
from sarigan.metrics.features import LABEL_NET_STEPS, LabelNet, factor_distance, load_or_train_label_net
from sarigan.networks import Generator

DELTAS = (-1.0, 1.0)  # group gain ×0 (switch the group off) and ×2


@dataclass
class EditUnit:
    layer: int
    group: int
    channels: torch.Tensor  # input-channel indices of the layer


def edit_units(G: Generator, units: str = "model", seed: int = 0) -> list[EditUnit]:
    """``model``: the model's (non-empty) groups; ``none``-grouping models and ``random`` get random channel
    subsets (a random partition into cfg.groups parts of equal size, or of the model's group sizes)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for layer, module in enumerate(G.styled_layers()):
        index = module.group_index()
        if units == "model" and index is not None:
            index = index.cpu()
        else:
            c = module.conv.weight.shape[1]
            base = index.cpu() if index is not None else torch.arange(c) * G.cfg.groups // c
            index = base[torch.randperm(c, generator=g)]  # same sizes, random members
        for group in range(G.cfg.groups):
            chans = (index == group).nonzero().flatten()
            if chans.numel():
                out.append(EditUnit(layer, group, chans))
    return out


@torch.no_grad()
def _predict(net: LabelNet, images: torch.Tensor) -> dict[str, torch.Tensor]:
    dev = next(net.parameters()).device
    # quantize like real images, so the predictor sees the same input domain
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
    return {k: v.cpu() for k, v in net.predict(x.to(dev)).items()}


def _distances(net: LabelNet, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, F] per-factor distances."""
    return torch.stack([factor_distance(kind, a[name], b[name]) for name, (kind, _) in net.heads.items()], 1)


@torch.no_grad()
def factor_changes(net: LabelNet, edited: torch.Tensor, base: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Per-image, per-factor change of the predicted factors from ``base`` to ``edited`` (images in [-1, 1]),
    in units of the real-pair baseline (1.0 = as much as between two unrelated real images). [B, F]"""
    return _distances(net, _predict(net, edited), _predict(net, base)) / baseline


@torch.no_grad()
def real_pair_baseline(net: LabelNet, real_images: torch.Tensor, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """Per-factor mean distance between the predictions of random pairs of real images. [F]"""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(real_images.shape[0], (2, n), generator=g)
    x = real_images.float() / 127.5 - 1
    return _distances(net, _predict(net, x[idx[0]]), _predict(net, x[idx[1]])).mean(0).clamp_min(1e-8)


@torch.no_grad()
def effect_matrix(G: Generator, net: LabelNet, units: list[EditUnit], baseline: torch.Tensor, n_seeds: int = 64,
                  deltas: tuple[float, ...] = DELTAS, batch: int = 64, seed: int = 0, psi: float = 1.0
                  ) -> np.ndarray:
    """E[u, f] (see the module doc). [len(units), n_factors]"""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(units), len(net.heads))
    for lo in range(0, n_seeds, batch):
        z = torch.randn(min(batch, n_seeds - lo), G.cfg.z_dim, generator=gen).to(device)
        ws = G.mapping(z)
        if psi != 1.0:
            ws = G.truncate(ws, psi)
        base = G.synthesis(ws, "const")[0]
        for u, unit in enumerate(units):
            for delta in deltas:
                with style_edit(G, unit.layer, unit.group, delta, mode="gain", channels=unit.channels):
                    edited = G.synthesis(ws, "const")[0]
                total[u] += factor_changes(net, edited, base, baseline).sum(0)
    return (total / (n_seeds * len(deltas))).numpy()


def concentration(effects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per factor: (e₁ − e₂)/e₁ over units, and the index of the top unit."""
    order = np.argsort(-effects, axis=0)
    top = np.take_along_axis(effects, order[:1], 0)[0]
    second = np.take_along_axis(effects, order[1:2], 0)[0] if effects.shape[0] > 1 else np.zeros_like(top)
    return (top - second) / np.maximum(top, 1e-12), order[0]


def exclusivity(effects: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Per factor: the share of its top unit's total effect that goes to this factor (1/F = moves all factors
    alike, 1 = moves only this one). Complements the concentration gap, which a unit that breaks everything
    can also win."""
    rows = effects[top]  # [F, F]: row k = effects of factor k's top unit
    return np.diag(rows) / np.maximum(rows.sum(1), 1e-12)


def as_layer_group_matrix(effects: np.ndarray, units: list[EditUnit], n_layers: int, n_groups: int) -> np.ndarray:
    """[layers, groups, factors] with NaN for empty groups."""
    out = np.full((n_layers, n_groups, effects.shape[1]), np.nan)
    for u, unit in enumerate(units):
        out[unit.layer, unit.group] = effects[u]
    return out


def shapes_factor_predictor(resolution: int, steps: int = LABEL_NET_STEPS, cache_dir: Any = None,
                            device: torch.device | str = "cpu") -> LabelNet:
    """The LabelNet trained on the 20,000 real shapes of ``load_data('shapes')`` (cached; the same net as the
    proxy FID extractor for shapes)."""
    from sarigan.data import load_shapes

    data = load_shapes(resolution, seed=0)
    return load_or_train_label_net(data.images, data.labels, "shapes", steps=steps, cache_dir=cache_dir,
                                   device=device)


def evaluate_disentanglement(G: Generator, net: LabelNet, real_images: torch.Tensor, units: str = "model",
                             n_seeds: int = 64, deltas: tuple[float, ...] = DELTAS, seed: int = 0,
                             psi: float = 1.0) -> dict[str, Any]:
    """Effect matrix, per-factor concentration, and the score (mean concentration) as a JSON-able record."""
    unit_list = edit_units(G, units, seed)
    baseline = real_pair_baseline(net, real_images, seed=seed)
    effects = effect_matrix(G, net, unit_list, baseline, n_seeds, deltas, seed=seed, psi=psi)
    gaps, top = concentration(effects)
    factors = list(net.heads)
    n_layers = len(G.styled_layers())
    matrix = as_layer_group_matrix(effects, unit_list, n_layers, G.cfg.groups)
    return {
        "grouping": G.cfg.grouping, "units": "random subsets" if units == "random" or G.cfg.grouping == "none"
        else "model groups", "n_seeds": n_seeds, "deltas": list(deltas), "factors": factors,
        "score": float(gaps.mean()),
        "concentration": {f: float(v) for f, v in zip(factors, gaps, strict=True)},
        "exclusivity": {f: float(v) for f, v in zip(factors, exclusivity(effects, top), strict=True)},
        "top_unit": {f: {"layer": unit_list[i].layer, "group": unit_list[i].group, "effect": float(effects[i, k])}
                     for k, (f, i) in enumerate(zip(factors, top, strict=True))},
        "mean_effect": {f: float(v) for f, v in zip(factors, effects.mean(0), strict=True)},
        "effect_matrix": np.where(np.isnan(matrix), None, np.round(matrix, 5)).tolist(),  # [layer][group][factor]
        "baseline_real_pairs": {f: float(v) for f, v in zip(factors, baseline, strict=True)},
    }


def format_matrix(record: dict[str, Any]) -> str:
    """Markdown table: one row per (layer, group), one column per factor; the top unit of each factor is starred."""
    factors = record["factors"]
    tops = {(t["layer"], t["group"], f) for f, t in record["top_unit"].items()}
    lines = ["| layer | group | " + " | ".join(factors) + " |", "|---|---|" + "---|" * len(factors)]
    for layer, row in enumerate(record["effect_matrix"]):
        for group, cell in enumerate(row):
            if cell[0] is None:
                continue
            vals = [f"{v:.3f}{'*' if (layer, group, f) in tops else ''}" for f, v in zip(factors, cell, strict=True)]
            lines.append(f"| {layer} | {group} | " + " | ".join(vals) + " |")
    lines.append("| concentration | | " + " | ".join(f"{record['concentration'][f]:.3f}" for f in factors) + " |")
    return "\n".join(lines)
