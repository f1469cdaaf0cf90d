"""SariGAN losses (spec §1.6): non-saturating logistic, lazy R1, lazy path length, grouping, MI."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sarigan.config import SariGANConfig


def d_logistic(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """L_D = softplus(−D(x)) + softplus(D(G(z)))."""
    return F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()


def g_nonsaturating(fake_logit: torch.Tensor) -> torch.Tensor:
    """L_G = softplus(−D(G(z)))."""
    return F.softplus(-fake_logit).mean()


def r1_penalty(real_logit: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E‖∇_x D(x)‖² on reals (the caller multiplies by γ/2 and the lazy interval)."""
    (grad,) = torch.autograd.grad(real_logit.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def path_length_penalty(images: torch.Tensor, ws: torch.Tensor, mean_path: torch.Tensor, decay: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path-length regularizer with the Jacobian taken w.r.t. the W+ tensor [B, n_latent, 2·d] (spec §1.6).

    Returns (penalty, new running mean, mean path length of this batch). Needs double backward.
    """
    noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    lengths = grad.pow(2).sum(2).mean(1).sqrt()
    new_mean = mean_path + decay * (lengths.detach().mean() - mean_path)
    return (lengths - new_mean).pow(2).mean(), new_mean, lengths.detach().mean()


def group_loss(cfg: SariGANConfig, loss_sim: torch.Tensor, loss_bal: torch.Tensor) -> torch.Tensor:
    """L_group = λ_sim·Σ_l L_sim,l / 20 + λ_bal·Σ_l L_bal,l / 20 (the official hard-coded /20)."""
    return (cfg.lambda_sim * loss_sim + cfg.lambda_bal * loss_bal) / cfg.group_loss_div


def mi_loss(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """InfoGAN-style MI bound with a fixed-variance Gaussian Q: mean (Q(G(w)) − sg(w))² over batch × dim(w)."""
    return (q.float() - w.detach().float()).pow(2).mean()
