import pytest
import torch

from sarigan.config import get_preset
from sarigan.networks import Discriminator, Generator


@pytest.mark.parametrize("grouping", ["learned", "uniform", "none"])
def test_generator_and_discriminator_shapes(grouping: str) -> None:
    torch.manual_seed(0)
    cfg = get_preset("tiny").replace(grouping=grouping)
    G, D = Generator(cfg), Discriminator(cfg)
    z = torch.randn(5, cfg.z_dim)
    w = G.mapping(z)
    assert w.shape == (5, 2 * cfg.w_dim)
    img, l_sim, _ = G.synthesis(w)
    assert img.shape == (5, 3, cfg.resolution, cfg.resolution)
    assert (l_sim.item() > 0) == (grouping == "learned")
    logit, q = D(img)
    assert logit.shape == (5,) and q.shape == (5, 2 * cfg.w_dim)


def test_sarigan_uses_w_c_only_for_4x4_conv_and_torgb() -> None:
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    G = Generator(cfg)
    w = torch.randn(2, 2 * cfg.w_dim)
    ws = w[:, None].repeat(1, G.n_latent, 1)
    ws.requires_grad_(True)
    img, _, _ = G.synthesis(ws, noise_mode="const")
    (grad,) = torch.autograd.grad(img.sum(), ws)
    d = cfg.w_dim
    assert grad[:, 0, :d].abs().max() == 0 and grad[:, 0, d:].abs().max() > 0  # 4×4 conv: w_c only
    assert grad[:, -1, :d].abs().max() == 0  # last ToRGB only (index n_latent−1)
    assert grad[:, 2, :d].abs().max() > 0  # a grouped conv reads w_g


def test_truncation_with_psi_below_one() -> None:
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    G = Generator(cfg).eval()
    G.w_avg.copy_(torch.randn(2 * cfg.w_dim))
    ws = G.mapping(torch.randn(3, cfg.z_dim))
    t = G.truncate(ws, 0.5)
    assert t.shape == (3, G.n_latent, 2 * cfg.w_dim)
    assert torch.allclose(t[:, 0], G.w_avg + 0.5 * (ws - G.w_avg), atol=1e-6)
    cut = G.truncate(ws, 0.0, cutoff=2)
    assert torch.allclose(cut[:, 1], G.w_avg.expand(3, -1)) and torch.allclose(cut[:, 2], ws)
    z = torch.randn(3, cfg.z_dim)
    img0 = G(z, psi=0.0, noise_mode="const")
    assert torch.allclose(img0[0], img0[1], atol=1e-5)  # ψ = 0: every sample is the average image
    assert G(z, psi=0.7, cutoff=3, noise_mode="const").shape == (3, 3, cfg.resolution, cfg.resolution)


def test_style_hook_changes_only_one_group() -> None:
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    G = Generator(cfg)
    layer = G.convs[1]
    w = torch.randn(2, 2 * cfg.w_dim)
    base, _, _ = layer.styles(w, G.convs[0].conv.kernel_similarity())
    index = layer.group_index()
    g = int(index[0])

    def hook(s_c: torch.Tensor, s_g: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_g = s_g.clone()
        s_g[:, g] *= 3.0
        return s_c, s_g

    layer.style_hook = hook
    edited, _, _ = layer.styles(w, G.convs[0].conv.kernel_similarity())
    inside = index == g
    assert torch.allclose(edited[:, inside], 3 * base[:, inside])
    assert torch.allclose(edited[:, ~inside], base[:, ~inside])
