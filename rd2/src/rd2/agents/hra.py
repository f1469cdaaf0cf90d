"""HRA (van Seijen et al. 2017), spec §4: the reward decomposition is *given* (the toy game's true sub-rewards).
One scalar head per channel on a shared torso, each trained on its own sub-reward with its own greedy target
y_k = r_k + γ Q_k(s', argmax_a' Q_k(s', a'; θ⁻); θ⁻); the agent acts greedily on Σ_k Q_k."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rd2.agents.base import Agent, TensorBatch, td_loss
from rd2.agents.dqn import DQNConfig
from rd2.agents.networks import ValueHead
from rd2.torso import make_torso


@dataclass
class HRAConfig(DQNConfig):
    target_action: str = "head"  # head: a'_k = argmax Q_k (HRA, spec §4); sum: a' = argmax Σ_k Q_k (RD²-style)


class MultiHeadQ(nn.Module):
    """Shared torso, K scalar Q heads: (B, K, A)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, k: int, cfg: DQNConfig) -> None:
        super().__init__()
        self.torso = make_torso(obs_shape, cfg.torso_hidden)
        self.heads = nn.ModuleList(ValueHead(self.torso.out_dim, n_actions, cfg.hidden, 1, cfg.dueling, cfg.noisy,
                                             cfg.sigma0) for _ in range(k))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.torso(obs)
        return torch.stack([h(x).squeeze(-1) for h in self.heads], dim=1)


class HRA(Agent):
    name = "hra"
    needs_sub_rewards = True

    def build(self) -> nn.Module:
        return MultiHeadQ(self.obs_shape, self.n_actions, self.num_components, self.cfg)

    def action_values(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return net(obs).sum(1)

    def components(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"q": self.online(obs)}

    def loss(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        if batch.sub_returns is None:
            raise ValueError("HRA needs the given sub-rewards in the batch (sub_returns)")
        qk = self.online(batch.obs)  # (B, K, A)
        idx = batch.action[:, None, None].expand(-1, qk.shape[1], 1)
        q = qk.gather(2, idx).squeeze(2)  # (B, K)
        with torch.no_grad():
            next_qk = self.target(batch.next_obs)
            if self.cfg.target_action == "head":
                a_next = next_qk.argmax(2, keepdim=True)  # one a' per head
            elif self.cfg.target_action == "sum":
                a_next = next_qk.sum(1).argmax(1)[:, None, None].expand(-1, next_qk.shape[1], 1)
            else:
                raise ValueError(f"unknown target_action {self.cfg.target_action!r}: use head or sum")
            y = batch.sub_returns + batch.discount[:, None] * next_qk.gather(2, a_next).squeeze(2)
        per_sample = td_loss(q, y, self.cfg.loss).sum(1)
        loss = (batch.weights * per_sample).mean()
        return loss, (q - y).sum(1).abs().detach(), {"td_loss": float(per_sample.detach().mean()),
                                                     "q": float(q.detach().sum(1).mean())}
