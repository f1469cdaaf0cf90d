"""The editing API changes exactly one group's styles at one layer and nothing else."""

import pytest
import torch
from neurips20_common import UserError

from sarigan.config import get_preset
from sarigan.edit import edit, edit_grid, group_channels, parse_scales, style_edit, sweep_layer
from sarigan.grouping import group_styles
from sarigan.networks import Generator


def _model(grouping: str = "learned") -> Generator:
    torch.manual_seed(0)
    return Generator(get_preset("tiny").replace(grouping=grouping)).eval()


def _capture_styles(G: Generator) -> tuple[list, list]:
    """Record the final per-channel styles s fed to each grouped layer's modulated conv."""
    seen: list[torch.Tensor] = []
    handles = [layer.conv.register_forward_pre_hook(lambda m, a: seen.append(a[1].detach().clone()))
               for layer in G.styled_layers()]
    return seen, handles


@pytest.mark.parametrize("mode", ["group", "channel", "gain"])
def test_edit_touches_only_the_chosen_group_and_layer(mode: str) -> None:
    G = _model()
    w = G.mapping(torch.randn(3, G.cfg.z_dim))
    layer, group = 1, 2
    chans = group_channels(G, layer, group)
    assert chans.numel() > 0
    base, handles = _capture_styles(G)
    with torch.no_grad():
        G.synthesis(w, "const")
    for h in handles:
        h.remove()
    with torch.no_grad(), style_edit(G, layer, group, 0.7, mode):
        edited, handles = _capture_styles(G)  # registered after the edit's own pre-hook, so it sees its output
        G.synthesis(w, "const")
    for h in handles:
        h.remove()
    for k, (a, b) in enumerate(zip(base, edited, strict=True)):
        if k < layer:
            torch.testing.assert_close(a, b)  # earlier layers are untouched
        elif k == layer:
            outside = torch.ones(a.shape[1], dtype=torch.bool)
            outside[chans] = False
            torch.testing.assert_close(a[:, outside], b[:, outside])
            assert (a[:, chans] - b[:, chans]).abs().max() > 1e-3
            if mode == "gain":
                torch.testing.assert_close(b[:, chans], 1.7 * a[:, chans])
    assert all(layer_.style_hook is None and not layer_.conv._forward_pre_hooks for layer_ in G.styled_layers())


def test_group_edit_is_the_adagn_scalar_shift() -> None:
    """mode 'group' with δ gives s_i = (s_g[g] + δ) · ŝ_i inside g (spec §1.4), computed directly here."""
    G = _model()
    w = G.mapping(torch.randn(2, G.cfg.z_dim))
    layer, group, delta = 0, 1, -0.5
    module = G.styled_layers()[layer]
    d = G.cfg.w_dim
    w_l = w  # W (not W+): every layer reads the same w
    s_c = module.affine(w_l[:, d:])
    s_g = module.affine_group(w_l[:, :d]).clone()
    s_g[:, group] += delta
    expected = group_styles(s_c, s_g, module.group_index())
    seen, handles = _capture_styles(G)
    with torch.no_grad(), style_edit(G, layer, group, delta, "group"):
        G.synthesis(w, "const")
    for h in handles:
        h.remove()
    torch.testing.assert_close(seen[layer], expected.detach())


def test_zero_edit_is_the_identity_and_grids_have_the_right_shape() -> None:
    G = _model()
    w = G.mapping(torch.randn(2, G.cfg.z_dim))
    with torch.no_grad():
        ref = G.synthesis(w, "const")[0]
    torch.testing.assert_close(edit(G, w, 0, 0, 0.0), ref)
    grid = edit_grid(G, w, 0, 0, [-1.0, 0.0, 1.0])
    assert grid.shape == (6, 3, G.cfg.resolution, G.cfg.resolution)
    torch.testing.assert_close(grid[1], ref[0])  # row 0, middle column (δ = 0)
    sweep, groups = sweep_layer(G, w, 1, [0.0, 2.0])
    assert sweep.shape[0] == 2 * len(groups)


def test_w_plus_latents_are_accepted() -> None:
    G = _model()
    w = G.mapping(torch.randn(1, G.cfg.z_dim))[:, None].repeat(1, G.n_latent, 1)
    assert edit(G, w, 0, 0, 1.0).shape == (1, 3, G.cfg.resolution, G.cfg.resolution)


def test_errors_are_user_errors() -> None:
    G = _model()
    w = G.mapping(torch.randn(1, G.cfg.z_dim))
    with pytest.raises(UserError, match="layer 99"):
        edit(G, w, 99, 0, 1.0)
    with pytest.raises(UserError, match="group 9"):
        edit(G, w, 0, 9, 1.0)
    with pytest.raises(UserError, match="mode"):
        edit(G, w, 0, 0, 1.0, mode="nope")
    with pytest.raises(UserError, match="not grouped"):
        edit(_model("none"), w, 0, 0, 1.0)
    with pytest.raises(UserError, match="comma"):
        parse_scales("1,a")
    assert parse_scales("-2,-1,0,1,2") == [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_gain_edit_works_on_stylegan2_with_a_channel_subset() -> None:
    G = _model("none")
    w = G.mapping(torch.randn(2, G.cfg.z_dim))
    with torch.no_grad():
        ref = G.synthesis(w, "const")[0]
        with style_edit(G, 0, None, -1.0, "gain", channels=torch.tensor([0, 3, 5])):
            out = G.synthesis(w, "const")[0]
    assert (out - ref).abs().max() > 1e-4
