"""Projection (GAN inversion) of a real image into W or W+, so that its groups can be edited (spec §4.3, §6).

Optimizes the latent (one 2·d w, or one per layer in W+) and the per-layer noise maps to reproduce the target with
pixel MSE (no LPIPS: its VGG weights are not available offline), plus the StyleGAN2 noise regularizer (squared
autocorrelation of each noise map at one-pixel shifts, over a pyramid of scales) so the noise cannot encode the
image. As in the StyleGAN2 projector: start at w̄ (from the mapping of 4,096 random z), Gaussian perturbation of the
latent that decays to 0 over the first 75% of the steps, learning rate with a short ramp-up and cosine ramp-down,
noise maps renormalized to zero mean and unit variance after every step.

With a ``mask`` (1 = hole) the loss reads only the visible pixels: the training-free inpainting baseline (issue
20). A batch of targets is projected at once, one latent and one set of noise maps per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from neurips20_common import UserError
from PIL import Image, UnidentifiedImageError

from sarigan.networks import Generator


@dataclass
class ProjectConfig:
    steps: int = 300
    lr: float = 0.1
    space: str = "w+"  # "w": one latent for every layer; "w+": one per layer (better fit, edits still per layer)
    noise_reg: float = 1e5  # weight of the noise autocorrelation penalty (StyleGAN2 projector)
    latent_noise: float = 0.05  # initial latent perturbation, in units of the w spread
    latent_noise_ramp: float = 0.75
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    optimize_noise: bool = True
    w_avg_samples: int = 4096


def noise_layers(G: Generator) -> list[torch.nn.Module]:
    """The NoiseInjection modules in synthesis order (4×4 conv, then the grouped convs)."""
    return [G.conv1.noise] + [layer.noise for layer in G.styled_layers()]


def noise_shapes(G: Generator) -> list[tuple[int, ...]]:
    return [tuple(getattr(G, f"noise_{i}").shape) for i in range(len(noise_layers(G)))]


@contextmanager
def fixed_noise(G: Generator, noises: list[torch.Tensor]) -> Iterator[None]:
    """Synthesize with these noise maps ([1, 1, r, r] each) whatever the noise mode."""
    handles = []
    for module, noise in zip(noise_layers(G), noises, strict=True):
        def hook(mod: torch.nn.Module, args: tuple, n: torch.Tensor = noise) -> tuple:
            return args[0], n
        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """Σ over maps, scales and images of squared mean autocorrelation at a one-pixel shift (x and y)."""
    loss = noises[0].new_zeros(())
    for noise in noises:
        n = noise
        while True:
            loss = loss + ((n * n.roll(1, 3)).mean((1, 2, 3)).pow(2) + (n * n.roll(1, 2)).mean((1, 2, 3)).pow(2)).sum()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return loss


def _lr_at(t: float, cfg: ProjectConfig) -> float:
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return cfg.lr * ramp * min(1.0, t / cfg.lr_rampup)


def masked_mse(image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Pixel MSE over the visible pixels (mask = 1 on the hole), or over all pixels without a mask."""
    if mask is None:
        return F.mse_loss(image, target)
    visible = (1 - mask).expand_as(image)
    return ((image - target).pow(2) * visible).sum() / visible.sum().clamp_min(1.0)


def project(G: Generator, target: torch.Tensor, cfg: ProjectConfig | None = None, seed: int = 0,
            log: Callable[[str], None] | None = None, mask: torch.Tensor | None = None
            ) -> dict[str, torch.Tensor | list | float]:
    """Invert ``target`` ([B, 3, R, R] in [−1, 1]) into G's W or W+; with ``mask`` [B, 1, R, R] (1 = hole) only the
    visible pixels enter the loss.

    Returns {"latent": [2d] (W) or [n_latent, 2d] (W+) (with a leading B when B > 1), "noises": list of
    [B, 1, r, r], "image": [B, 3, R, R], "mse": final (visible-)pixel MSE, "history": MSE every 10 steps}.
    """
    cfg = cfg or ProjectConfig()
    if cfg.space not in ("w", "w+"):
        raise UserError(f"space must be 'w' or 'w+', got {cfg.space!r}")
    device = next(G.parameters()).device
    target = target.to(device)
    mask = mask.to(device) if mask is not None else None
    batch = target.shape[0]
    gen = torch.Generator().manual_seed(seed)
    flags = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)  # only the latent and the noise maps are optimized
    with torch.no_grad():
        ws = G.mapping(torch.randn(cfg.w_avg_samples, G.cfg.z_dim, generator=gen).to(device))
        w_mean = ws.mean(0)
        w_std = float((ws - w_mean).pow(2).sum(1).mean().sqrt())
    start = w_mean[None, None].repeat(batch, G.n_latent, 1) if cfg.space == "w+" else w_mean[None].repeat(batch, 1)
    latent = start.detach().clone().requires_grad_(True)
    noises = [torch.randn((batch, *s[1:]), generator=gen).to(device).requires_grad_(cfg.optimize_noise)
              for s in noise_shapes(G)]
    params = [latent] + (noises if cfg.optimize_noise else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    history: list[float] = []
    for step in range(cfg.steps):
        t = step / max(1, cfg.steps)
        for group in opt.param_groups:
            group["lr"] = _lr_at(t, cfg)
        strength = w_std * cfg.latent_noise * max(0.0, 1.0 - t / cfg.latent_noise_ramp) ** 2
        perturbed = latent + torch.randn(latent.shape, generator=gen).to(device) * strength
        with fixed_noise(G, noises):
            image = G.synthesis(perturbed, "const")[0]
        mse = masked_mse(image, target, mask)
        loss = mse + cfg.noise_reg * noise_regularization(noises) if cfg.optimize_noise else mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for n in noises:
                n.sub_(n.mean((1, 2, 3), keepdim=True)).div_(n.std((1, 2, 3), keepdim=True) + 1e-8)
        if step % 10 == 0 or step == cfg.steps - 1:
            history.append(mse.item())
            if log and (step % 50 == 0 or step == cfg.steps - 1):
                log(f"step {step:4d}/{cfg.steps} mse {mse.item():.5f} lr {_lr_at(t, cfg):.4f}")
    with torch.no_grad(), fixed_noise(G, noises):
        final = G.synthesis(latent, "const")[0]
    for p, flag in zip(G.parameters(), flags, strict=True):
        p.requires_grad_(flag)
    latent = latent.detach().cpu()
    return {"latent": latent[0] if batch == 1 else latent, "noises": [n.detach().cpu() for n in noises],
            "image": final.cpu(), "mse": float(masked_mse(final, target, mask)), "history": history}


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """An image file → [1, 3, R, R] in [−1, 1] (RGB; shorter side resized to R with Lanczos, centre crop)."""
    from sarigan.data import _prepare

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            arr = _prepare(im, resolution)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from None
    return torch.from_numpy(np.ascontiguousarray(arr)).float()[None] / 127.5 - 1.0
