"""Network pieces shared by every agent (spec §6.4): factorized-Gaussian NoisyLinear (Fortunato et al. 2018), the
value head (scalar or C51, dueling or not) and the DQN / Rainbow network on the shared torsos of
:mod:`rd2.torso` (Nature CNN for frames, MLP for the toy game).

Every head returns ``(B, A, atoms)``: atoms = 1 for scalar Q, logits for a distributional head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rd2.torso import make_torso


class NoisyLinear(nn.Module):
    """Linear layer with factorized Gaussian noise: w = μ_w + σ_w ⊙ (f(ε_out) f(ε_in)ᵀ), f(x) = sgn(x)√|x|.

    Only the two noise vectors are stored. Small batches (acting) never build the noise matrix:
    x wᵀ = x μ_wᵀ + f(ε_out) ⊙ ((x ⊙ f(ε_in)) σ_wᵀ); learner batches build w (cheaper there). The noise is used in
    train mode only; ``eval()`` acts with the mean weights. ``reset_noise()`` draws new noise from torch's global RNG
    (captured by checkpoints, so resume stays exact).
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("eps_in", torch.zeros(in_features))
        self.register_buffer("eps_out", torch.zeros(out_features))
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, self.sigma0 / math.sqrt(self.in_features))
        nn.init.constant_(self.bias_sigma, self.sigma0 / math.sqrt(self.in_features))

    @staticmethod
    def _scaled(n: int, device: torch.device) -> torch.Tensor:
        x = torch.randn(n, device=device)
        return x.sign() * x.abs().sqrt()

    @property
    def weight_eps(self) -> torch.Tensor:
        """The (rank-one) weight noise f(ε_out) f(ε_in)ᵀ, for inspection."""
        return torch.outer(self.eps_out, self.eps_in)

    @torch.no_grad()
    def reset_noise(self) -> None:
        self.eps_in.copy_(self._scaled(self.in_features, self.weight_mu.device))
        self.eps_out.copy_(self._scaled(self.out_features, self.weight_mu.device))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints written before the two noise vectors stored the matrix ``weight_eps`` = f(ε_out) f(ε_in)ᵀ
        and ``bias_eps`` = f(ε_out): recover the vectors from them."""
        w, b = state_dict.pop(prefix + "weight_eps", None), state_dict.pop(prefix + "bias_eps", None)
        if w is not None and b is not None and prefix + "eps_in" not in state_dict:
            row = int(b.abs().argmax())
            state_dict[prefix + "eps_out"] = b
            state_dict[prefix + "eps_in"] = w[row] / b[row]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        if x.shape[0] >= 16:  # learner batches: one matmul with the built weight is cheaper (measured on CPU)
            return F.linear(x, torch.addcmul(self.weight_mu, self.weight_sigma, self.weight_eps), bias)
        return F.linear(x, self.weight_mu, bias) + F.linear(x * self.eps_in, self.weight_sigma) * self.eps_out


def linear(in_features: int, out_features: int, noisy: bool, sigma0: float = 0.5) -> nn.Module:
    return NoisyLinear(in_features, out_features, sigma0) if noisy else nn.Linear(in_features, out_features)


def reset_noise(module: nn.Module) -> None:
    """Redraw the noise of every NoisyLinear inside ``module`` (no-op for plain networks)."""
    for m in module.modules():
        if isinstance(m, NoisyLinear):
            m.reset_noise()


class ValueHead(nn.Module):
    """features → (B, A, atoms). Dueling (Wang et al. 2016): Q = V + A − mean_a A, applied to the atom logits
    for C51 (as in Rainbow). ``hidden`` is the 512-unit layer of the Nature network."""

    def __init__(self, in_dim: int, n_actions: int, hidden: int = 512, atoms: int = 1, dueling: bool = False,
                 noisy: bool = False, sigma0: float = 0.5) -> None:
        super().__init__()
        self.n_actions, self.atoms, self.dueling = n_actions, atoms, dueling
        self.adv = nn.Sequential(linear(in_dim, hidden, noisy, sigma0), nn.ReLU(),
                                 linear(hidden, n_actions * atoms, noisy, sigma0))
        if dueling:
            self.value = nn.Sequential(linear(in_dim, hidden, noisy, sigma0), nn.ReLU(),
                                       linear(hidden, atoms, noisy, sigma0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adv = self.adv(x).view(-1, self.n_actions, self.atoms)
        if not self.dueling:
            return adv
        value = self.value(x).view(-1, 1, self.atoms)
        return value + adv - adv.mean(dim=1, keepdim=True)


class QNetwork(nn.Module):
    """Torso + one value head: the DQN / Rainbow network. ``forward`` returns (B, A, atoms)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int = 512, atoms: int = 1,
                 dueling: bool = False, noisy: bool = False, sigma0: float = 0.5, torso_hidden: int = 64) -> None:
        super().__init__()
        self.torso = make_torso(obs_shape, torso_hidden)
        self.head = ValueHead(self.torso.out_dim, n_actions, hidden, atoms, dueling, noisy, sigma0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))
