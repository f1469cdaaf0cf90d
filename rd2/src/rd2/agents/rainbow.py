"""Rainbow (Hessel et al. 2018): dueling + noisy nets + n-step + prioritized replay + C51 head, double action
selection. Hyperparameters: spec §6.4 (the AgentConfig defaults)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rd2.agents.base import Agent, AgentConfig, TensorBatch
from rd2.agents.distributional import project, support
from rd2.agents.networks import QNetwork


@dataclass
class RainbowConfig(AgentConfig):
    """Rainbow defaults are the AgentConfig defaults (spec §6.4)."""


def c51_loss(logits: torch.Tensor, action: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy −Σ_i m_i log p_i(s, a) per sample (= KL up to a constant); also the PER priority."""
    log_p = F.log_softmax(logits[torch.arange(len(action)), action], dim=-1)
    return -(target_probs * log_p).sum(-1)


class Rainbow(Agent):
    name = "rainbow"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.z = support(self.cfg.v_min, self.cfg.v_max, self.cfg.atoms, self.device)

    def build(self) -> nn.Module:
        c = self.cfg
        return QNetwork(self.obs_shape, self.n_actions, c.hidden, c.atoms, c.dueling, c.noisy, c.sigma0,
                        c.torso_hidden)

    def action_values(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return (F.softmax(net(obs), dim=-1) * self.z).sum(-1)

    def target_distribution(self, batch: TensorBatch) -> torch.Tensor:
        """Projected n-step target at a' = argmax_a E[Z(s', a; θ)] (double), Z from the target net."""
        with torch.no_grad():
            next_probs = F.softmax(self.target(batch.next_obs), dim=-1)
            if self.cfg.double:
                a_next = self.action_values(self.online, batch.next_obs).argmax(1)
            else:
                a_next = (next_probs * self.z).sum(-1).argmax(1)
            p = next_probs[torch.arange(len(a_next)), a_next]
            return project(p, self.z, batch.returns, batch.discount, self.cfg.v_min, self.cfg.v_max, self.cfg.atoms)

    def loss(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        target = self.target_distribution(batch)
        logits = self.online(batch.obs)
        per_sample = c51_loss(logits, batch.action, target)
        q = (F.softmax(logits.detach(), -1) * self.z).sum(-1).gather(1, batch.action[:, None])
        return (batch.weights * per_sample).mean(), per_sample.detach(), {"td_loss": float(per_sample.detach().mean()),
                                                                           "q": float(q.detach().mean())}
