"""StyleGAN2 building blocks in native PyTorch (spec §1.1, §4.4): no custom CUDA ops, no JIT.

Every op is made of ``conv2d`` / ``conv_transpose2d`` / ``leaky_relu``, which have double backward on CPU and
CUDA, so R1 and path-length regularization work everywhere. Equalized learning rate: weights are N(0, 1) and
scaled at run time by 1/sqrt(fan_in) (times ``lr_mul`` for the mapping network).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
BLUR_KERNEL = (1, 3, 3, 1)


# ---------------------------------------------------------------------------------------------------------------
# FIR filtering: [1,3,3,1] blur, ×2 upsampling, ×2 downsampling
# ---------------------------------------------------------------------------------------------------------------
def make_kernel(taps: tuple[int, ...] = BLUR_KERNEL) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalized to sum 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def _depthwise(kernel: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    # conv2d is a correlation; flip so that this is a true convolution (no-op for symmetric kernels).
    return kernel.flip([0, 1]).to(dtype)[None, None].expand(channels, 1, *kernel.shape)


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Pad by ``pad`` = (before, after) on both axes and filter each channel with ``kernel``."""
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, _depthwise(kernel, x.shape[1], x.dtype), groups=x.shape[1])


def upsample2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Zero-insertion ×2 upsampling followed by the FIR filter (gain 4), as one transposed depthwise conv.

    Same alignment as upfirdn2d(up=2, pad=(2, 1)) in the reference implementations.
    """
    c = x.shape[1]
    return F.conv_transpose2d(x, _depthwise(kernel * 4, c, x.dtype), stride=2, padding=1, groups=c)


def downsample2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """FIR filter then keep every second pixel (upfirdn2d(down=2, pad=(1, 1)))."""
    x = F.pad(x, [1, 1, 1, 1])
    return F.conv2d(x, _depthwise(kernel, x.shape[1], x.dtype), stride=2, groups=x.shape[1])


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel() * gain, persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur(x, self.kernel, self.pad)


class Upsample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2x(x, self.kernel)


# ---------------------------------------------------------------------------------------------------------------
# Equalized-lr layers, bias + leaky ReLU
# ---------------------------------------------------------------------------------------------------------------
def bias_lrelu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, gain: float = SQRT2) -> torch.Tensor:
    """Bias, leaky ReLU(0.2), times sqrt(2) (StyleGAN2's ``fused_lrelu``)."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape).to(x.dtype), slope) * gain


class BiasLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_lrelu(x, self.bias)


class EqualLinear(nn.Module):
    """y = x (W·lr_mul/sqrt(in))ᵀ + b·lr_mul, optionally followed by leaky ReLU·sqrt(2)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return bias_lrelu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activate={self.activate}"


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, stride={self.stride}, padding={self.padding}"


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


# ---------------------------------------------------------------------------------------------------------------
# Generator pieces: modulated conv (batch-grouped), noise, constant input
# ---------------------------------------------------------------------------------------------------------------
def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     upsample: bool = False, padding: int = 0, fused: bool = False) -> torch.Tensor:
    """StyleGAN2 weight modulation and demodulation.

    x: [B, I, H, W]; weight: [O, I, k, k] (already scaled by 1/sqrt(fan_in)); styles: [B, I].
    W'_{b,o,i} = W_{o,i}·s_{b,i}; with ``demodulate`` W'' = W' / sqrt(Σ_{i,k} W'² + 1e-8) (unit norm per output
    channel). ``upsample`` uses a stride-2 transposed conv (the blur comes after, in :class:`ModulatedConv2d`).

    ``fused=True`` builds the per-sample weights and runs one conv with the batch as groups (the official code);
    ``fused=False`` computes the same thing as scale x by s → shared-weight conv → scale by the demodulation
    coefficients (Σ_{i,k} W'²_{o,i,k} = Σ_i s_i² Σ_k W²_{o,i,k}); it is 1.5–1.7× faster on CPU here.
    """
    b, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    if not fused:
        x = x * styles[:, :, None, None].to(x.dtype)
        wt = weight.to(x.dtype)
        out = (F.conv_transpose2d(x, wt.transpose(0, 1), stride=2) if upsample
               else F.conv2d(x, wt, padding=padding))
        if demodulate:
            coef = torch.rsqrt(styles.pow(2) @ weight.pow(2).sum(dim=[2, 3]).t() + 1e-8)  # [B, O]
            out = out * coef[:, :, None, None].to(out.dtype)
        return out
    wt = weight[None] * styles[:, None, :, None, None].to(weight.dtype)  # [B, O, I, k, k]
    if demodulate:
        wt = wt * torch.rsqrt(wt.pow(2).sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
    x = x.reshape(1, b * i, h, w)
    wt = wt.to(x.dtype)
    if upsample:
        wt = wt.transpose(1, 2).reshape(b * i, o, kh, kw)
        out = F.conv_transpose2d(x, wt, stride=2, padding=0, groups=b)
    else:
        out = F.conv2d(x, wt.reshape(b * o, i, kh, kw), padding=padding, groups=b)
    return out.reshape(b, o, *out.shape[2:])


def demodulated_weight(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """The per-sample weight that :func:`modulated_conv2d` uses (for tests and inspection): [B, O, I, k, k]."""
    wt = weight[None] * styles[:, None, :, None, None]
    return wt * torch.rsqrt(wt.pow(2).sum(dim=[2, 3, 4], keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Weights and geometry of a modulated conv; the per-input-channel style s comes from the caller.

    Where s comes from is the SariGAN part (Group AdaIN + AdaGN, :mod:`sarigan.networks`); this class only does
    StyleGAN2's modulation, demodulation and (for ``upsample``) transposed conv + [1,3,3,1] blur.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, demodulate: bool = True,
                 upsample: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.demodulate, self.upsample = demodulate, upsample
        self.padding = kernel_size // 2
        # transposed conv (k=3, stride 2) gives 2H+1; blur with pad (1, 1) and gain 4 brings it to 2H.
        self.blur = Blur(pad=(1, 1), gain=4.0) if upsample else None

    def forward(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        out = modulated_conv2d(x, self.weight * self.scale, styles, self.demodulate, self.upsample, self.padding,
                               self.fused)
        return self.blur(out) if self.blur is not None else out

    def kernel_similarity(self) -> torch.Tensor:
        """P = K̂K̂ᵀ: cosine similarity of the kernels producing each output channel, detached (spec §1.3.1)."""
        k = F.normalize(self.weight.detach().flatten(1), dim=1)
        return k @ k.t()

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, {k}, demodulate={self.demodulate}, upsample={self.upsample}"


class NoiseInjection(nn.Module):
    """x + strength·noise, one learned strength per layer (init 0). ``noise`` [B|1, 1, H, W] or None (fresh)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


# ---------------------------------------------------------------------------------------------------------------
# Discriminator pieces: conv layer with optional blur-downsampling, residual block, minibatch stddev
# ---------------------------------------------------------------------------------------------------------------
class ConvLayer(nn.Sequential):
    """[blur →] equalized conv (stride 2 when downsampling) [→ bias + lrelu·√2]."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, downsample: bool = False,
                 activate: bool = True, bias: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (kernel_size - 1)
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride=2, padding=0, bias=bias and not activate))
        else:
            layers.append(EqualConv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2,
                                      bias=bias and not activate))
        if activate:
            layers.append(BiasLeakyReLU(out_ch) if bias else nn.LeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual D block: 3×3 conv, 3×3 conv with blur + stride-2, 1×1 blurred skip; sum / √2 (spec §1.1)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, n_features: int = 1) -> torch.Tensor:
    """Append the std over groups of samples, averaged over channels and pixels, as extra feature maps."""
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:
        g -= 1
    y = x.reshape(g, b // g, n_features, c // n_features, h, w)
    y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)
    y = y.mean(dim=[2, 3, 4]).reshape(b // g, n_features, 1, 1)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
