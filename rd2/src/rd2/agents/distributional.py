"""Categorical (C51) machinery: the support, the projection of a shifted distribution onto it
(Bellemare et al. 2017, Alg. 1) and DRDRL's convolution of per-channel sub-distributions (spec §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def support(v_min: float, v_max: float, atoms: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.linspace(v_min, v_max, atoms, device=device)


def project(next_probs: torch.Tensor, next_support: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
            v_min: float, v_max: float, atoms: int) -> torch.Tensor:
    """Project the distribution of r + discount·Z (Z ~ next_probs on next_support) onto the fixed support
    {v_min + iΔz}. ``discounts`` already holds γⁿ(1 − done). Shapes: (B, N), (N,), (B,), (B,) → (B, atoms).

    Each atom's mass is split between its two neighbours in proportion to the distance; an atom landing exactly
    on a support point keeps all its mass there. Values outside [v_min, v_max] are clipped to the ends.
    """
    delta = (v_max - v_min) / (atoms - 1)
    tz = (rewards.unsqueeze(1) + discounts.unsqueeze(1) * next_support.unsqueeze(0)).clamp(v_min, v_max)
    b = (tz - v_min) / delta
    lower, upper = b.floor().long(), b.ceil().long()
    lower, upper = lower.clamp(0, atoms - 1), upper.clamp(0, atoms - 1)
    same = (upper == lower).to(next_probs.dtype)
    out = torch.zeros(next_probs.shape[0], atoms, dtype=next_probs.dtype, device=next_probs.device)
    out.scatter_add_(1, lower, next_probs * (upper.to(b.dtype) - b + same))
    out.scatter_add_(1, upper, next_probs * (b - lower.to(b.dtype)))
    return out


def convolve(probs: torch.Tensor) -> torch.Tensor:
    """Distribution of Σ_k Z_k for independent Z_k on equally spaced supports with a common spacing.

    ``probs``: (B, K, m) sub-distributions; returns (B, K(m−1)+1) on the support whose first atom is the sum of
    the K first atoms. Full 1-D convolution, done with a grouped conv1d (one group per batch row).
    """
    out = probs[:, 0]
    for k in range(1, probs.shape[1]):
        p = probs[:, k]
        batch, m = p.shape
        x = F.pad(out, (m - 1, m - 1)).unsqueeze(0)  # (1, B, L + 2m − 2)
        out = F.conv1d(x, p.flip(-1).unsqueeze(1), groups=batch).squeeze(0)  # conv1d correlates: flip the kernel
    return out
