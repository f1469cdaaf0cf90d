"""DRDRL (Lin et al. 2019, spec §4): K categorical sub-return distributions on a shared torso; the full-return
distribution is their convolution, trained with the C51 loss; a KL term between the sub-Q's Boltzmann action
distributions pushes the channels apart (no 0–1 or half-half splits).

Channel k reads f(s) ⊙ e_k (a learned per-channel vector) through one shared categorical head. Each channel's
support has m atoms with the spacing Δ of the full support, starting at v_min / K, so the sum of the K channels
lives exactly on the full support {v_min + iΔ, i < K(m−1)+1}. [Details UNVERIFIED, spec §4.]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rd2.agents.base import Agent, TensorBatch
from rd2.agents.distributional import convolve, project
from rd2.agents.networks import ValueHead
from rd2.agents.rainbow import RainbowConfig
from rd2.torso import make_torso


@dataclass
class DRDRLConfig(RainbowConfig):
    kl_weight: float = 0.01  # λ of the action-distribution KL disentanglement term [UNVERIFIED, spec §4]
    kl_temperature: float = 1.0  # π_k = softmax(Q_k / τ)


def sub_atoms(atoms: int, k: int) -> int:
    """Atoms per channel so that K channels sum to at least ``atoms`` atoms: K(m − 1) + 1 ≥ atoms."""
    return math.ceil((atoms - 1) / k) + 1


class DRDRLNetwork(nn.Module):
    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, k: int, m: int, cfg: DRDRLConfig) -> None:
        super().__init__()
        self.k, self.m, self.n_actions = k, m, n_actions
        self.torso = make_torso(obs_shape, cfg.torso_hidden)
        self.channel = nn.Parameter(1.0 + 0.1 * torch.randn(k, self.torso.out_dim))  # e_k
        self.head = ValueHead(self.torso.out_dim, n_actions, cfg.hidden, m, cfg.dueling, cfg.noisy, cfg.sigma0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Sub-distribution logits (B, K, A, m)."""
        x = self.torso(obs)
        xk = (x.unsqueeze(1) * self.channel).flatten(0, 1)  # (B·K, D)
        return self.head(xk).view(x.shape[0], self.k, self.n_actions, self.m)


class DRDRL(Agent):
    name = "drdrl"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        c, k = self.cfg, self.num_components
        self.m = sub_atoms(c.atoms, k)
        self.full_atoms = k * (self.m - 1) + 1
        self.delta = (c.v_max - c.v_min) / (self.full_atoms - 1)
        self.z_sub = c.v_min / k + self.delta * torch.arange(self.m, device=self.device, dtype=torch.float32)
        self.z_full = c.v_min + self.delta * torch.arange(self.full_atoms, device=self.device, dtype=torch.float32)

    def build(self) -> nn.Module:
        k = self.num_components
        return DRDRLNetwork(self.obs_shape, self.n_actions, k, sub_atoms(self.cfg.atoms, k), self.cfg)

    def sub_q(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """(B, K, A): Q_k = E[Z_k]."""
        return (F.softmax(net(obs), -1) * self.z_sub).sum(-1)

    def action_values(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return self.sub_q(net, obs).sum(1)  # E[Σ_k Z_k] = Σ_k E[Z_k]

    def components(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"q": self.sub_q(self.online, obs)}

    def loss(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        c = self.cfg
        b = len(batch.action)
        with torch.no_grad():
            next_probs = F.softmax(self.target(batch.next_obs), -1)  # (B, K, A, m)
            online_q = self.action_values(self.online, batch.next_obs) if c.double else None
            q_next = online_q if c.double else (next_probs * self.z_sub).sum(-1).sum(1)
            a_next = q_next.argmax(1)
            p_next = convolve(next_probs[torch.arange(b), :, a_next])  # (B, M): full return at s', a'
            target = project(p_next, self.z_full, batch.returns, batch.discount, c.v_min, c.v_max, self.full_atoms)
        logits = self.online(batch.obs)  # (B, K, A, m)
        probs = F.softmax(logits, -1)
        full = convolve(probs[torch.arange(b), :, batch.action])  # (B, M)
        per_sample = -(target * torch.log(full.clamp_min(1e-8))).sum(-1)
        # disentanglement: maximize Σ_{k≠j} KL(π_k || π_j), π_k = softmax(Q_k(s, ·) / τ)
        log_pi = F.log_softmax((probs * self.z_sub).sum(-1) / c.kl_temperature, dim=-1)  # (B, K, A)
        pi = log_pi.exp()
        kl = (pi.unsqueeze(2) * (log_pi.unsqueeze(2) - log_pi.unsqueeze(1))).sum(-1)  # (B, K, K), zero diagonal
        kl_term = kl.sum((1, 2)).mean()
        loss = (batch.weights * per_sample).mean() - c.kl_weight * kl_term
        metrics = {"td_loss": float(per_sample.detach().mean()), "kl_pi": float(kl_term.detach())}
        return loss, per_sample.detach(), metrics
