"""SariGAN generator and discriminator (spec §1.1–§1.5), top to bottom.

Generator: z → mapping (PixelNorm, n_mlp−1 FC, one FC widening to 2·d) → w = [w_g; w_c] → per-layer W+ →
synthesis: constant 4×4 → styled 4×4 conv (w_c) → for each resolution 8…R: upsampling styled conv, styled conv
(both grouped: Group AdaIN + AdaGN from w_g and w_c), ToRGB (w_c) added to the upsampled skip image.
Discriminator: residual D with minibatch stddev and a 1 + dim(w) head: real/fake logit and the Q-head that
regresses w for the MI loss.

``grouping='none'`` gives plain StyleGAN2 on the same 2·d-dim w: every affine reads the full w.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from sarigan.config import SariGANConfig
from sarigan.grouping import SimilarityGrouping, group_styles, uniform_assignment
from sarigan.ops import (
    BiasLeakyReLU,
    ConstantInput,
    ConvLayer,
    EqualLinear,
    ModulatedConv2d,
    NoiseInjection,
    PixelNorm,
    ResBlock,
    Upsample,
    minibatch_stddev,
)

# A style hook sees (s_c [B, C], s_g [B, G], group index [C]) of one grouped layer and returns (s_c, s_g):
# the editing API of issue #9 sets it to change one group's styles (spec §1.4, last bullet).
StyleHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class MappingNetwork(nn.Module):
    """z ∈ R^z_dim → w ∈ R^{2·w_dim}: PixelNorm, (n_mlp − 1) FC + lrelu, one widening FC + lrelu (spec §1.2)."""

    def __init__(self, z_dim: int, w_dim: int, n_mlp: int, lr_mul: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        dim = z_dim
        for _ in range(n_mlp - 1):
            layers.append(EqualLinear(dim, w_dim, lr_mul=lr_mul, activate=True))
            dim = w_dim
        layers.append(EqualLinear(dim, 2 * w_dim, lr_mul=lr_mul, activate=True))  # `final_style`
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class StyledConv(nn.Module):
    """Style → modulated 3×3 conv (optionally ×2 up) → noise → bias + lrelu·√2.

    ``mode``: 'channel' (the 4×4 conv: s = A_c(w_c)), 'full' (StyleGAN2: s = A(w)), 'learned' / 'uniform'
    (SariGAN: s_i = s_g[g(i)]·s_c,i/‖s_c|g(i)‖ with s_c = A_c(w_c), s_g = A_g(w_g), spec §1.4).
    """

    def __init__(self, in_ch: int, out_ch: int, cfg: SariGANConfig, mode: str, upsample: bool = False) -> None:
        super().__init__()
        self.mode, self.w_dim = mode, cfg.w_dim
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, upsample=upsample, fused=cfg.fused_modconv)
        if mode == "full":
            self.affine = EqualLinear(2 * cfg.w_dim, in_ch, bias_init=1.0)
        else:
            self.affine = EqualLinear(cfg.w_dim, in_ch, bias_init=1.0)  # A_c on w_c
        if mode in ("learned", "uniform"):
            self.affine_group = EqualLinear(cfg.w_dim, cfg.groups, bias_init=1.0)  # A_g on w_g
        if mode == "learned":
            self.grouping = SimilarityGrouping(in_ch, cfg.groups, cfg.sim_sharpness, cfg.tau_init, cfg.beta_init,
                                               cfg.beta_scale)
        if mode == "uniform":
            self.register_buffer("uniform_index", uniform_assignment(in_ch, cfg.groups))
        self.noise = NoiseInjection()
        self.act = BiasLeakyReLU(out_ch)
        self.style_hook: StyleHook | None = None

    def group_index(self) -> torch.Tensor | None:
        """The hard channel → group assignment used in the forward pass (None when ungrouped)."""
        if self.mode == "learned":
            return self.grouping.assignment()
        if self.mode == "uniform":
            return self.uniform_index
        return None

    def styles(self, w: torch.Tensor, similarity: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Per-input-channel styles s [B, C], and (L_sim, L_bal) for a learned grouping, else None."""
        if self.mode == "full":
            return self.affine(w), None, None
        w_g, w_c = w[:, : self.w_dim], w[:, self.w_dim:]  # torch.chunk(style, 2, 1) in the official code
        s_c = self.affine(w_c)
        if self.mode == "channel":
            return s_c, None, None
        loss_sim = loss_bal = None
        if self.mode == "learned":
            assert similarity is not None, "a learned grouping needs the previous layer's kernel similarity"
            index, loss_sim, loss_bal = self.grouping(similarity)
        else:
            index = self.uniform_index
        s_g = self.affine_group(w_g)
        if self.style_hook is not None:
            s_c, s_g = self.style_hook(s_c, s_g, index)
        return group_styles(s_c, s_g, index), loss_sim, loss_bal

    def forward(self, x: torch.Tensor, w: torch.Tensor, similarity: torch.Tensor | None = None,
                noise: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        s, loss_sim, loss_bal = self.styles(w, similarity)
        x = self.conv(x, s)
        return self.act(self.noise(x, noise)), loss_sim, loss_bal


class ToRGB(nn.Module):
    """1×1 modulated conv without demodulation (style from w_c; full w for StyleGAN2) + bias + upsampled skip."""

    def __init__(self, in_ch: int, cfg: SariGANConfig, full_w: bool) -> None:
        super().__init__()
        self.full_w, self.w_dim = full_w, cfg.w_dim
        self.affine = EqualLinear(2 * cfg.w_dim if full_w else cfg.w_dim, in_ch, bias_init=1.0)
        self.conv = ModulatedConv2d(in_ch, 3, 1, demodulate=False, fused=cfg.fused_modconv)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = Upsample()

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        s = self.affine(w if self.full_w else w[:, self.w_dim:])
        out = self.conv(x, s) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    def __init__(self, cfg: SariGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.n_mlp, cfg.lr_mlp)
        self.register_buffer("w_avg", torch.zeros(2 * cfg.w_dim))  # tracked mean of the final w (truncation)
        grouped = cfg.grouping if cfg.grouping != "none" else "full"
        full_w = cfg.grouping == "none"
        c4 = cfg.channels(4)
        self.input = ConstantInput(c4)
        # The 4×4 conv is never grouped; it sees w_c only (SariGAN) and emits the P of the first grouped layer.
        self.conv1 = StyledConv(c4, c4, cfg, "full" if full_w else "channel")
        self.to_rgb1 = ToRGB(c4, cfg, full_w)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_ch = c4
        for res in cfg.resolutions()[1:]:
            out_ch = cfg.channels(res)
            self.convs.append(StyledConv(in_ch, out_ch, cfg, grouped, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, cfg, grouped))
            self.to_rgbs.append(ToRGB(out_ch, cfg, full_w))
            in_ch = out_ch
        self.n_latent = cfg.n_latent
        # fixed noise maps for 'const' noise (sample grids, inspection): layer 0 at 4², then two per resolution
        for i, res in enumerate([4] + [r for r in cfg.resolutions()[1:] for _ in range(2)]):
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        self.num_layers = 1 + len(self.convs)

    def styled_layers(self) -> list[StyledConv]:
        """The grouped layers in synthesis order (the 4×4 conv excluded)."""
        return list(self.convs)

    @torch.no_grad()
    def update_w_avg(self, w_mean: torch.Tensor, beta: float) -> None:
        self.w_avg.copy_(w_mean.detach().to(self.w_avg.dtype).lerp(self.w_avg, beta))

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """w' = w̄ + ψ(w − w̄) on the layers below ``cutoff`` (all when None), on the full 2·d w (spec §7.8)."""
        if psi == 1.0:
            return ws
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.n_latent, -1)
        cutoff = self.n_latent if cutoff is None else cutoff
        layer = torch.arange(self.n_latent, device=ws.device)[None, :, None]
        truncated = self.w_avg.lerp(ws, psi)
        return torch.where(layer < cutoff, truncated, ws)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random", skips: dict[int, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ws: [B, 2·d] or W+ [B, n_latent, 2·d] → (image [B, 3, R, R], Σ_l L_sim,l, Σ_l L_bal,l).

        Latent index 0 feeds the 4×4 conv, 1 the first ToRGB and the first up-conv, then block j uses 2j+1, 2j+2
        for its convs and 2j+3 for its ToRGB (rosinality's layout, spec §1.1). ``skips`` (resolution → features
        [B, C_res, res, res], the inpainting encoder's U-Net skips) are added to the constant input at 4² and after
        each resolution's upsampling conv.
        """
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.n_latent, -1)
        noises = [getattr(self, f"noise_{i}") if noise_mode == "const" else None for i in range(self.num_layers)]
        zero = ws.new_zeros(())
        loss_sim, loss_bal = zero, zero
        skips = skips or {}
        x = self.input(ws.shape[0])
        if 4 in skips:
            x = x + skips[4]
        x, _, _ = self.conv1(x, ws[:, 0], None, noises[0])
        skip = self.to_rgb1(x, ws[:, 1], None)
        prev = self.conv1
        for j, to_rgb in enumerate(self.to_rgbs):
            for k, layer in enumerate(self.convs[2 * j: 2 * j + 2]):
                similarity = prev.conv.kernel_similarity() if layer.mode == "learned" else None
                x, l_sim, l_bal = layer(x, ws[:, 2 * j + 1 + k], similarity, noises[2 * j + 1 + k])
                if k == 0 and x.shape[-1] in skips:
                    x = x + skips[x.shape[-1]]
                if l_sim is not None:
                    loss_sim, loss_bal = loss_sim + l_sim, loss_bal + l_bal
                prev = layer
            skip = to_rgb(x, ws[:, 2 * j + 3], skip)
        return skip, loss_sim, loss_bal

    def forward(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random") -> torch.Tensor:
        """Convenience: z → image, with optional truncation towards the tracked w̄."""
        ws = self.mapping(z)
        if psi != 1.0:
            ws = self.truncate(ws, psi, cutoff)
        return self.synthesis(ws, noise_mode)[0]


class Discriminator(nn.Module):
    """Residual D (spec §1.1) with the SariGAN head FC(C4 → 1 + 2·w_dim): logit and Q(x) ≈ w (§1.6)."""

    def __init__(self, cfg: SariGANConfig) -> None:
        super().__init__()
        res = cfg.resolutions()[::-1]  # R, R/2, …, 4
        blocks: list[nn.Module] = [ConvLayer(3, cfg.channels(res[0]), 1)]
        for hi, lo in itertools.pairwise(res):
            blocks.append(ResBlock(cfg.channels(hi), cfg.channels(lo)))
        self.blocks = nn.Sequential(*blocks)
        c4 = cfg.channels(4)
        self.final_conv = ConvLayer(c4 + 1, c4, 3)
        self.final_linear = EqualLinear(c4 * 16, c4, activate=True)
        self.head = EqualLinear(c4, 1 + 2 * cfg.w_dim)  # `final_info_linear` (model.py:1026)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(x)
        h = self.final_conv(minibatch_stddev(h, group_size=4, n_features=1))
        out = self.head(self.final_linear(h.flatten(1)))
        return out[:, 0], out[:, 1:]
