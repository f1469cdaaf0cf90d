"""Semantic editing: change the style of one channel group of one layer, keep everything else fixed (spec §1.4).

A grouped layer's style is s_i = s_g[g(i)] · s_c,i / ‖s_c restricted to g(i)‖₂. Three edits of group g at layer l:

- ``group`` (AdaGN, the paper's edit): s_g[g] ← s_g[g] + δ. Only group g's gain changes; demodulation then
  re-balances it against the other groups.
- ``channel`` (Group AdaIN): the channel styles inside g are spread around their mean, s_c,i ← m + (1 + δ)(s_c,i − m)
  for i ∈ g (δ = −1 makes the channels of g equally important, δ > 0 exaggerates their relative importance).
  A uniform rescaling of s_c inside a group would be a no-op, because Group AdaIN normalizes it away.
- ``gain``: the final styles s_i of an arbitrary channel set are multiplied by (1 + δ). On a grouped layer with the
  set = group g this equals s_g[g] ← (1 + δ)·s_g[g]; it also works on ``grouping=none`` models (random subsets),
  which is what the disentanglement comparison uses.

Layers are numbered 0 … n−1 over :meth:`Generator.styled_layers` (the grouped convs in synthesis order; layer l reads
latent l + 1). Edits are applied through the generator's style hook or a forward pre-hook and always removed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from neurips20_common import UserError

from sarigan.networks import Generator, StyledConv

EDIT_MODES = ("group", "channel", "gain")


def get_layer(G: Generator, layer: int) -> StyledConv:
    layers = G.styled_layers()
    if not 0 <= layer < len(layers):
        raise UserError(f"layer {layer} does not exist: this generator has grouped layers 0…{len(layers) - 1}")
    return layers[layer]


def layer_resolution(G: Generator, layer: int) -> int:
    return G.cfg.resolutions()[1 + layer // 2]


def group_channels(G: Generator, layer: int, group: int) -> torch.Tensor:
    """Indices of the input channels of ``layer`` that belong to ``group``."""
    index = get_layer(G, layer).group_index()
    if index is None:
        raise UserError(f"layer {layer} is not grouped (grouping=none); use mode 'gain' with an explicit channel set")
    if not 0 <= group < G.cfg.groups:
        raise UserError(f"group {group} does not exist: layer {layer} has groups 0…{G.cfg.groups - 1}")
    return (index == group).nonzero().flatten()


@contextmanager
def style_edit(G: Generator, layer: int, group: int | None, delta: float | torch.Tensor, mode: str = "group",
               channels: torch.Tensor | None = None) -> Iterator[None]:
    """Within the block, ``layer`` of G synthesizes with group ``group`` edited by ``delta`` (see module doc).

    ``delta`` is a float or a [B] tensor (one value per sample). ``mode='gain'`` takes ``channels`` (else the
    group's channels).
    """
    if mode not in EDIT_MODES:
        raise UserError(f"edit mode must be one of {', '.join(EDIT_MODES)}, got {mode!r}")
    target = get_layer(G, layer)
    if mode == "gain":
        chans = channels if channels is not None else group_channels(G, layer, int(group))

        def pre_hook(module: torch.nn.Module, args: tuple) -> tuple:
            x, s = args
            d = torch.as_tensor(delta, dtype=s.dtype, device=s.device).reshape(-1, 1)
            s = s.clone()
            s[:, chans.to(s.device)] = s[:, chans.to(s.device)] * (1 + d)
            return x, s

        handle = target.conv.register_forward_pre_hook(pre_hook)
        try:
            yield
        finally:
            handle.remove()
        return
    if target.group_index() is None:
        raise UserError(f"layer {layer} is not grouped (grouping=none): only mode 'gain' applies")
    group_channels(G, layer, int(group))  # validates the group index

    def hook(s_c: torch.Tensor, s_g: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.as_tensor(delta, dtype=s_c.dtype, device=s_c.device).reshape(-1)
        if mode == "group":
            s_g = s_g.clone()
            s_g[:, group] = s_g[:, group] + d
        else:
            member = (index == group).to(s_c.dtype)[None]  # [1, C]
            mean = (s_c * member).sum(1, keepdim=True) / member.sum().clamp(min=1)
            s_c = torch.where(member.bool(), mean + (1 + d[:, None]) * (s_c - mean), s_c)
        return s_c, s_g

    previous = target.style_hook
    target.style_hook = hook
    try:
        yield
    finally:
        target.style_hook = previous


@torch.no_grad()
def edit(G: Generator, w: torch.Tensor, layer: int, group: int, delta: float, mode: str = "group",
         noise_mode: str = "const") -> torch.Tensor:
    """Images of G from w ([B, 2d] or W+ [B, n_latent, 2d]) with (layer, group) edited by delta. [B, 3, R, R]"""
    with style_edit(G, layer, group, delta, mode):
        return G.synthesis(w, noise_mode)[0]


@torch.no_grad()
def edit_grid(G: Generator, w: torch.Tensor, layer: int, group: int, scales: Sequence[float], mode: str = "group",
              noise_mode: str = "const") -> torch.Tensor:
    """One row per latent, one column per scale: [B·len(scales), 3, R, R] (row-major)."""
    cols = [edit(G, w, layer, group, s, mode, noise_mode) for s in scales]
    return torch.stack(cols, 1).flatten(0, 1)


@torch.no_grad()
def sweep_layer(G: Generator, w: torch.Tensor, layer: int, scales: Sequence[float], mode: str = "group",
                noise_mode: str = "const") -> tuple[torch.Tensor, list[int]]:
    """For one latent w [1, …]: one row per non-empty group of ``layer``, one column per scale.

    Returns the images [n_groups·len(scales), 3, R, R] and the group index of each row.
    """
    index = get_layer(G, layer).group_index()
    if index is None:
        raise UserError(f"layer {layer} is not grouped (grouping=none); there are no groups to sweep")
    groups = sorted(int(g) for g in torch.unique(index))
    rows = [edit_grid(G, w[:1], layer, g, scales, mode, noise_mode) for g in groups]
    return torch.cat(rows), groups


def parse_scales(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--scales must be comma-separated numbers, e.g. -2,-1,0,1,2; got {text!r}") from None
    if not values:
        raise UserError("--scales is empty")
    return values
