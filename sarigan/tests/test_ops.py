import torch
import torch.nn.functional as F

from sarigan.ops import (
    ConvLayer,
    ModulatedConv2d,
    ResBlock,
    demodulated_weight,
    downsample2x,
    make_kernel,
    minibatch_stddev,
    modulated_conv2d,
    upsample2x,
)


def _upfirdn_reference(x: torch.Tensor, k: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    """Straightforward upfirdn2d: zero insertion, pad, true convolution, decimation (loop-free but naive)."""
    b, c, h, w = x.shape
    z = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    z[:, :, ::up, ::up] = x
    z = F.pad(z, [pad[0], pad[1], pad[0], pad[1]])
    kk = k.flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(z, kk, groups=c)[:, :, ::down, ::down]


def test_fir_up_down_match_reference() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    k = make_kernel().double()
    assert torch.allclose(upsample2x(x, k), _upfirdn_reference(x, k * 4, 2, 1, (2, 1)), atol=1e-12)
    assert torch.allclose(downsample2x(x, k), _upfirdn_reference(x, k, 1, 2, (1, 1)), atol=1e-12)
    # a constant image stays constant in the interior under up- and downsampling (unit DC gain)
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(upsample2x(ones, k)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12, dtype=torch.float64))


def test_demodulated_weights_have_unit_norm_per_output_channel() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3)
    styles = torch.rand(4, 6) * 3 + 0.1
    wt = demodulated_weight(conv.weight * conv.scale, styles)
    norms = wt.pow(2).sum(dim=[2, 3, 4]).sqrt()
    assert torch.allclose(norms, torch.ones(4, 5), atol=1e-5)


def test_modulated_conv_matches_per_sample_conv() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    s = torch.rand(3, 4, dtype=torch.float64) + 0.5
    wt = demodulated_weight(w, s)
    for fused in (True, False):
        out = modulated_conv2d(x, w, s, padding=1, fused=fused)
        for b in range(3):
            assert torch.allclose(out[b], F.conv2d(x[b: b + 1], wt[b], padding=1)[0], atol=1e-10)
        up = modulated_conv2d(x, w, s, upsample=True, fused=fused)
        for b in range(3):
            ref = F.conv_transpose2d(x[b: b + 1], wt[b].transpose(0, 1), stride=2)[0]
            assert torch.allclose(up[b], ref, atol=1e-10)
        rgb = modulated_conv2d(x, w[:, :, 1:2, 1:2], s, demodulate=False, fused=fused)
        assert torch.allclose(rgb, F.conv2d(x * s[:, :, None, None], w[:, :, 1:2, 1:2]), atol=1e-10)


def test_shapes_of_generator_and_discriminator_blocks() -> None:
    x = torch.randn(4, 8, 16, 16)
    assert ModulatedConv2d(8, 6, 3, upsample=True)(x, torch.ones(4, 8)).shape == (4, 6, 32, 32)
    assert ConvLayer(8, 6, 3, downsample=True)(x).shape == (4, 6, 8, 8)
    assert ResBlock(8, 12)(x).shape == (4, 12, 8, 8)
    assert minibatch_stddev(x).shape == (4, 9, 16, 16)
    assert minibatch_stddev(x[:3]).shape == (3, 9, 16, 16)  # group size falls back to a divisor


def test_double_backward_through_blur_and_modconv() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    conv = ModulatedConv2d(4, 4, 3, upsample=True)
    (g,) = torch.autograd.grad(conv(x, torch.ones(2, 4)).pow(2).sum(), x, create_graph=True)
    g.pow(2).sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
