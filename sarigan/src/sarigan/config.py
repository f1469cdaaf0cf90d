"""One dataclass of SariGAN hyperparameters; defaults are the official run (spec §1.7), presets are instances."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from neurips20_common import UserError
from neurips20_common.cli import check_fraction, check_nonnegative, check_positive

GROUPINGS = ("learned", "uniform", "none")
AUGMENTS = ("none", "ada")
POSITIVE_FIELDS = ("resolution", "z_dim", "w_dim", "n_mlp", "lr_mlp", "channel_base", "channel_max",
                   "channel_multiplier", "groups", "sim_sharpness", "beta_scale", "group_loss_div", "batch", "lr",
                   "d_reg_every", "g_reg_every", "pl_batch_shrink", "kimg", "sample_every", "ckpt_every",
                   "fd_samples", "log_every", "ada_interval", "ada_kimg")
NONNEGATIVE_FIELDS = ("lambda_sim", "lambda_bal", "mi_weight", "r1_gamma", "pl_weight", "pl_decay", "ema_kimg",
                      "ema_rampup", "max_minutes", "fd_every")


@dataclass
class SariGANConfig:
    # --- architecture (spec §1.1, §1.2) ---
    resolution: int = 256  # train.sh: size 256
    z_dim: int = 512  # train.py:354
    w_dim: int = 512  # per half: w = [w_g; w_c] has 2·w_dim = 1024 dims (model.py:733)
    n_mlp: int = 8  # PixelNorm + 7 FC 512→512 + 1 widening FC 512→1024 (§1.2)
    lr_mlp: float = 0.01  # equalized-lr multiplier of the mapping network
    channel_base: int = 16384  # channels(res) = min(channel_max, channel_base·cm / res): 512,…,512,256,128,64
    channel_max: int = 512
    channel_multiplier: int = 1  # train.sh: cm 1 for G and D (§1.7)
    # --- semantic grouping (spec §1.3, §1.5) ---
    grouping: str = "learned"  # learned | uniform (DBT-like, §1.0) | none (plain StyleGAN2 on the 2·w_dim w)
    groups: int = 16  # GroupModulatedConv2d(g=16) in every grouped layer
    sim_sharpness: float = 50.0  # S = σ(50·(P − τ))
    tau_init: float = -1.0  # τ = σ(θ_τ), θ_τ init −1
    beta_init: float = -2.0  # β = 5σ(θ_β), θ_β init −2
    beta_scale: float = 5.0
    lambda_sim: float = 0.1  # train.py:215
    lambda_bal: float = 5.0  # train.py:216
    group_loss_div: float = 20.0  # hard-coded /20 on the layer sums (model.py:906), not the layer count
    # --- mutual information (spec §1.6, §2.2 item 8) ---
    mi_weight: float = 20.0  # on both L_D and L_G (train.py:189, :224)
    mi_on_mixed: bool = False  # official: no MI on style-mixed batches (MI on ≈10% of iterations)
    swap_prob: float = 0.0  # official: the [w_g¹; w_c²] swap branch is dead; 0.5 is the likely intent
    # --- training (spec §1.7, §1.8) ---
    batch: int = 32  # 8 GPUs × 4
    lr: float = 0.002
    mixing: float = 0.9
    r1_gamma: float = 10.0
    d_reg_every: int = 16
    pl_weight: float = 2.0
    g_reg_every: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    ema_kimg: float = 10.0  # G EMA half-life in thousands of images: 0.5^(32/10000) per iteration at batch 32
    ema_rampup: float = 0.0  # 0 = official (none); >0 caps the half-life at rampup·images seen (SG2-ADA)
    w_avg_beta: float = 0.995  # EMA of the final 2·w_dim w, for truncation (§2.2 item 10, fixed)
    flip: bool = True  # random horizontal flip (dataset.py)
    augment: str = "none"  # official: none; "ada" = ADA-style adaptive augmentation for small sets (augment.py)
    ada_target: float = 0.6  # SG2-ADA: target of r_t = E[sign(D(real))]
    ada_interval: int = 4  # SG2-ADA: p is adjusted every 4 iterations
    ada_kimg: float = 500.0  # SG2-ADA: p can move from 0 to 1 in 500k images (lower it for short CPU runs)
    kimg: float = 121600.0  # --iter 3.8M × 32 (an upper bound, §1.7)
    max_minutes: float = 0.0  # wall-clock budget; training stops (and checkpoints) at whichever comes first; 0 = none
    fused_modconv: bool = False  # True: per-sample weights + batch-grouped conv (official); False: same math as
    #                              scale → conv → scale, faster on CPU (ops.modulated_conv2d)
    amp: bool = False  # bf16 autocast on CUDA for the main G/D passes (never on CPU)
    # --- bookkeeping (the official code: grids every 1000 it, checkpoints every 5000, no FID) ---
    sample_every: int = 1000
    ckpt_every: int = 5000
    fd_every: int = 0  # iterations between Fréchet distances on the in-package random-feature extractor; 0 = off
    fd_samples: int = 1000
    log_every: int = 100

    def __post_init__(self) -> None:
        # counts, sizes and rates (issue 15: zero or negative ones crashed or "succeeded" with an untrained model)
        for name in POSITIVE_FIELDS:
            check_positive(name, getattr(self, name))
        for name in NONNEGATIVE_FIELDS:
            check_nonnegative(name, getattr(self, name))
        if self.augment not in AUGMENTS:
            raise UserError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        check_fraction("ada_target", self.ada_target, low_open=False, high_open=False)
        if self.fd_every > 0 and self.fd_samples < 2:
            raise UserError(f"fd_samples must be ≥ 2 when fd_every > 0, got {self.fd_samples}")
        res = self.resolution
        if res < 8 or res & (res - 1):
            raise UserError(f"resolution must be a power of two ≥ 8, got {res}")
        if self.grouping not in GROUPINGS:
            raise UserError(f"grouping must be one of {', '.join(GROUPINGS)}, got {self.grouping!r}")
        if self.grouping != "none" and self.groups > min(self.channels(r) for r in self.resolutions()):
            raise UserError(f"groups={self.groups} exceeds the narrowest grouped layer's channel count")
        if not 0.0 <= self.swap_prob <= 1.0 or not 0.0 <= self.mixing <= 1.0:
            raise UserError("mixing and swap_prob are probabilities in [0, 1]")
        if self.n_mlp < 1:
            raise UserError("n_mlp must be ≥ 1 (the widening layer)")

    def channels(self, res: int) -> int:
        return min(self.channel_max, self.channel_base * self.channel_multiplier // res)

    def resolutions(self) -> list[int]:
        """4, 8, …, resolution."""
        out, r = [], 4
        while r <= self.resolution:
            out.append(r)
            r *= 2
        return out

    @property
    def n_latent(self) -> int:
        """Per-layer latents: 2·log2(R) − 2 (14 at 256²)."""
        return 2 * (self.resolution.bit_length() - 1) - 2

    def replace(self, **changes: Any) -> SariGANConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SariGANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"unknown config keys {unknown}")
        return cls(**data)


_CPU_SMALL = dict(z_dim=64, w_dim=64, n_mlp=4, channel_base=1024, channel_max=64, r1_gamma=0.1,
                  ema_kimg=2.0, ema_rampup=0.05, sample_every=500, ckpt_every=1000, fd_every=500, fd_samples=1000)

PRESETS: dict[str, SariGANConfig] = {
    # The official run: 256², cm 1, G 16, 512/1024 latents, batch 32 (train.sh). GPU only.
    "paper256": SariGANConfig(),
    # 16² (4→8→16), 64 channels, G 8, w = 2×64, 4-layer mapping: shapes are visible in minutes on 2 cores.
    "cpu16": SariGANConfig(resolution=16, groups=8, batch=32, kimg=160.0, **_CPU_SMALL),
    # 32², 64 channels, G 8: slower (about 3× per iteration); more detail.
    "cpu32": SariGANConfig(resolution=32, groups=8, batch=16, kimg=64.0, **_CPU_SMALL),
    # `make demo`: cpu16 narrowed to 32 channels and G 4, ~2–4 minutes on 2 cores.
    # It stops after 3 minutes of training when the CPU is slower or shared.
    "demo": SariGANConfig(resolution=16, groups=4, batch=32, kimg=40.0, max_minutes=3.0,
                          **{**_CPU_SMALL, "channel_max": 32, "channel_base": 512, "fd_every": 400,
                             "sample_every": 400, "ckpt_every": 1000, "fd_samples": 500}),
    # unit tests and the DDP smoke test: seconds.
    "tiny": SariGANConfig(resolution=8, z_dim=16, w_dim=16, n_mlp=2, channel_base=128, channel_max=16, groups=4,
                          batch=8, kimg=0.08, r1_gamma=0.1, ema_kimg=0.1, sample_every=5, ckpt_every=5,
                          fd_every=5, fd_samples=64, log_every=5),
}


def get_preset(name: str) -> SariGANConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace()
