"""Similarity-based semantic grouping of channels and the group-aware style (spec §1.3, §1.4).

A grouped layer with C input channels and G groups owns Θ ∈ R^{G×C}, θ_β and θ_τ. It reads P, the cosine
similarity of the kernels of the *previous* layer (which produce its input channels; detached), and returns

- the hard assignment H (one-hot argmax of the soft assignment, detached): the forward pass uses only this, so
  the adversarial and MI losses never reach Θ, β or τ (§1.3.6);
- L_sim = Σ_ij ((AᵀA)_ij − sg(S)_ij)², which trains Θ and θ_β only (§1.3.4);
- L_bal = (C²/G − Σ_ij S_ij)², which trains θ_τ only, since P is detached (§1.3.5).

The style of channel i is then s_i = s_g[g(i)] · s_c,i / ‖s_c restricted to group g(i)‖₂ (Group AdaIN inside a
group, AdaGN across groups; §1.4), see :func:`group_styles`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SimilarityGrouping(nn.Module):
    """Learned grouping of ``channels`` channels into ``groups`` groups (the official ``GroupModulatedConv2d``)."""

    def __init__(self, channels: int, groups: int, sharpness: float = 50.0, tau_init: float = -1.0,
                 beta_init: float = -2.0, beta_scale: float = 5.0) -> None:
        super().__init__()
        if groups > channels:
            raise ValueError(f"cannot split {channels} channels into {groups} groups")
        self.channels, self.groups = channels, groups
        self.sharpness, self.beta_scale = sharpness, beta_scale
        self.theta = nn.Parameter(torch.randn(groups, channels))  # Θ, init N(0, 1)
        self.theta_beta = nn.Parameter(torch.tensor(float(beta_init)))  # β = 5σ(θ_β) ≈ 0.60 at init
        self.theta_tau = nn.Parameter(torch.tensor(float(tau_init)))  # τ = σ(θ_τ) ≈ 0.27 at init

    @property
    def tau(self) -> torch.Tensor:
        return torch.sigmoid(self.theta_tau)

    @property
    def beta(self) -> torch.Tensor:
        return self.beta_scale * torch.sigmoid(self.theta_beta)

    def soft_assignment(self) -> torch.Tensor:
        """A = softmax over groups of β·Θ: column i is channel i's distribution over the G groups. [G, C]"""
        return torch.softmax(self.beta * self.theta, dim=0)

    def affinity(self, similarity: torch.Tensor) -> torch.Tensor:
        """S = σ(sharpness·(P − τ)): soft "same semantic" graph from the detached kernel similarity P. [C, C]"""
        return torch.sigmoid(self.sharpness * (similarity.detach() - self.tau))

    def assignment(self) -> torch.Tensor:
        """g(i): the hard group index of every channel, a true argmax (detached). [C] long"""
        return self.soft_assignment().detach().argmax(dim=0)

    def forward(self, similarity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (group index per channel [C], L_sim, L_bal)."""
        a = self.soft_assignment()
        s = self.affinity(similarity)
        loss_sim = (a.t() @ a - s.detach()).pow(2).sum()
        loss_bal = (self.channels**2 / self.groups - s.sum()).pow(2)
        return a.detach().argmax(dim=0), loss_sim, loss_bal

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}, sharpness={self.sharpness}"


def uniform_assignment(channels: int, groups: int) -> torch.Tensor:
    """DBT-like baseline: channel i goes to group ⌊i·G/C⌋ (contiguous, equal-size groups)."""
    return torch.arange(channels) * groups // channels


def group_styles(s_c: torch.Tensor, s_g: torch.Tensor, index: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """s_i = s_g[g(i)] · s_c,i / sqrt(Σ_{j∈g(i)} s_c,j²)   (spec §1.4).

    s_c: [B, C] channel styles, s_g: [B, G] group styles, index: [C] group of each channel. Returns [B, C].
    Within a group only the relative channel styles survive (Group AdaIN); the group scalar sets the group's
    gain (AdaGN). An empty group contributes nothing.
    """
    onehot = F.one_hot(index, s_g.shape[1]).to(s_c.dtype)  # [C, G]
    group_sq = s_c.pow(2) @ onehot  # [B, G]: Σ_{j∈g} s_c,j²
    norm = torch.sqrt(group_sq[:, index] + eps)  # [B, C]
    return s_g[:, index] * s_c / norm
