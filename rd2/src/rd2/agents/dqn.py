"""DQN (Mnih et al. 2015) with CleanRL's ``dqn_atari`` hyperparameters (spec §7.1): Nature CNN, ε-greedy,
uniform replay, one-step targets y = r + γ max_a' Q(s', a'; θ⁻), squared error, Adam."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rd2.agents.base import Agent, AgentConfig, TensorBatch, scalar_q, td_loss
from rd2.agents.networks import QNetwork


@dataclass
class DQNConfig(AgentConfig):
    lr: float = 1e-4  # CleanRL dqn_atari (spec §7.1)
    adam_eps: float = 1e-8
    n_step: int = 1
    learning_starts: int = 80_000
    target_update: int = 1_000
    eps_start: float = 1.0
    eps_end: float = 0.01
    eps_decay_steps: int = 1_000_000  # 10% of 10M steps
    eps_eval: float = 0.001
    prioritized: bool = False
    noisy: bool = False
    dueling: bool = False
    double: bool = False
    atoms: int = 1
    grad_clip: float = 0.0
    loss: str = "mse"


class DQN(Agent):
    name = "dqn"

    def build(self) -> nn.Module:
        c = self.cfg
        return QNetwork(self.obs_shape, self.n_actions, c.hidden, 1, c.dueling, c.noisy, c.sigma0, c.torso_hidden)

    def action_values(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return scalar_q(net(obs))

    def loss(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        q = self.action_values(self.online, batch.obs).gather(1, batch.action[:, None]).squeeze(1)
        with torch.no_grad():
            next_q = self.action_values(self.target, batch.next_obs)
            if self.cfg.double:
                a_next = self.action_values(self.online, batch.next_obs).argmax(1, keepdim=True)
            else:
                a_next = next_q.argmax(1, keepdim=True)
            y = batch.returns + batch.discount * next_q.gather(1, a_next).squeeze(1)
        per_sample = td_loss(q, y, self.cfg.loss)
        loss = (batch.weights * per_sample).mean()
        metrics = {"td_loss": float(per_sample.detach().mean()), "q": float(q.detach().mean())}
        return loss, (q - y).abs().detach(), metrics
