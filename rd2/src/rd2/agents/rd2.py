"""The RD² agent (spec §3.3): a reward decomposition learned jointly from replay, and one Q head per channel that
reads the channel's masked representation x(s) ⊙ m_k(s).

    L_Q = E ‖Q(s_t, a_t; θ) − y‖²,   y_k = Σ_{j<n} γ^j r̂_k(s_{t+j+1}) + γ^n Q_k(s_{t+n}, a′; θ⁻),
    a′ = argmax_a Σ_k Q_k(s_{t+n}, a; θ⁻)            (argmax of the *sum*, not per head as in HRA)

The agent acts greedily on Σ_k Q_k. r̂ comes from the decomposition with no gradient (TD gradients are stopped at
the reward heads); the decomposition itself is trained by L_dec (rd2.decomposition, §3.2) on a reward-balanced
batch of the same replay, so it does not depend on the policy. The torso is shared: L_Q and L_dec both shape it.

Option (B), ``mode="aux"``: a Rainbow C51 head on the unmasked features learns the total (clipped) reward and
picks the actions; the sub-Q TD loss is an auxiliary objective with weight λ_sub.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rd2.agents.base import Agent, TensorBatch, td_loss
from rd2.agents.distributional import project, support
from rd2.agents.networks import ValueHead
from rd2.agents.rainbow import RainbowConfig, c51_loss
from rd2.decomposition import DecompositionConfig, NatureTorso, RewardDecomposition, decomposition_loss


@dataclass
class RD2Config(RainbowConfig):
    """Rainbow machinery (dueling, noisy, n = 3, PER on the summed TD error, spec §3.3 option A) + decomposition."""

    mode: str = "sum"  # sum: option A (act on Σ_k Q_k); aux: option B (C51 head acts, sub-Q TD loss auxiliary)
    lambda_sub: float = 1.0  # option B: weight of the sub-Q TD loss
    double: bool = False  # a′ = argmax Σ_k Q_k(s′, ·; θ⁻) as written in spec §3.3; True: online argmax
    loss: str = "mse"  # ‖Q − y‖² (spec §3.3); huber is an option
    stop_mask_grad: bool = True  # the masks get no gradient from L_Q (spec §3.3 option)
    dec_weight: float = 1.0  # weight of L_dec in the joint loss
    dec_lr: float = 1e-4  # Adam lr of the masks and reward heads (the torso uses lr)
    mask_lr_scale: float = 10.0  # constant (toy) masks learn faster, as in rd2.toy_experiment
    dec_batch_size: int = 32
    dec_balance: str = "clipped"  # reward-balanced decomposition batch (clipped | raw | none)
    dec_nonzero_fraction: float = 0.5
    decomposition: DecompositionConfig = field(
        default_factory=lambda: DecompositionConfig(mask_type="state", lambda_zero=1.0))


class RD2Network(nn.Module):
    """Decomposition (torso, masks, reward heads) + K sub-Q heads on x ⊙ m_k (+ a C51 head in option B)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, cfg: RD2Config, k: int) -> None:
        super().__init__()
        dcfg = dataclasses.replace(cfg.decomposition, K=k)
        self.n_actions = n_actions
        if len(obs_shape) == 3:  # Atari frames: the Nature torso, masks over the 64×7×7 feature map
            torso = NatureTorso(obs_shape[0])
            n_features, fmap = 64 * 7 * 7, 64
        else:  # toy: the features are the coordinates themselves (spec §3.1)
            torso, n_features, fmap = None, int(np.prod(obs_shape)), None
        self.decomposition = RewardDecomposition(dcfg, n_features, n_actions, torso, fmap)
        hidden = cfg.hidden
        self.q_heads = nn.ModuleList(ValueHead(n_features, n_actions, hidden, 1, cfg.dueling, cfg.noisy, cfg.sigma0)
                                     for _ in range(k))
        self.total_head = (ValueHead(n_features, n_actions, hidden, cfg.atoms, cfg.dueling, cfg.noisy, cfg.sigma0)
                           if cfg.mode == "aux" else None)
        self.stop_mask_grad = cfg.stop_mask_grad

    def forward(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``q`` (B, K, A) from the masked features; ``logits`` (B, A, atoms) of the total head in option B."""
        dec = self.decomposition
        x, fmap = dec.features(obs)
        masks = dec.masks(x, fmap) if dec.masks is not None else torch.ones_like(x).unsqueeze(1).expand(
            -1, len(self.q_heads), -1)
        if self.stop_mask_grad:
            masks = masks.detach()
        q = torch.stack([head(x * masks[:, k]).squeeze(-1) for k, head in enumerate(self.q_heads)], dim=1)
        out = {"q": q, "masks": masks, "features": x}
        if self.total_head is not None:
            out["logits"] = self.total_head(x)
        return out

    def sub_rewards(self, next_obs: torch.Tensor) -> torch.Tensor:
        """r̂_k of the transitions that led to ``next_obs`` (the decomposition predicts from s_{t+1})."""
        return self.decomposition(next_obs)["sub_rewards"]


class RD2Agent(Agent):
    name = "rd2"
    needs_sequence = True
    needs_reward_batch = True
    has_learned_rewards = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.cfg.mode not in ("sum", "aux"):
            raise ValueError(f"unknown RD² mode {self.cfg.mode!r}: use sum (option A) or aux (option B)")
        self.z = support(self.cfg.v_min, self.cfg.v_max, self.cfg.atoms, self.device)

    def build(self) -> nn.Module:
        return RD2Network(self.obs_shape, self.n_actions, self.cfg, self.num_components)

    def param_groups(self) -> list[dict]:
        dec = self.online.decomposition
        masks = list(dec.masks.parameters()) if dec.masks is not None else []
        heads = list(dec.heads.parameters())
        special = {id(p) for p in masks + heads}
        rest = [p for p in self.online.parameters() if id(p) not in special]
        scale = self.cfg.mask_lr_scale if self.cfg.decomposition.mask_type == "const" else 1.0
        groups = [{"params": rest, "lr": self.cfg.lr}, {"params": heads, "lr": self.cfg.dec_lr}]
        if masks:
            groups.append({"params": masks, "lr": self.cfg.dec_lr * scale})
        return groups

    def action_values(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        out = net(obs)
        if self.cfg.mode == "aux":
            return (F.softmax(out["logits"], -1) * self.z).sum(-1)
        return out["q"].sum(1)

    def components(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.online(obs)
        return {"q": out["q"], "masks": out["masks"]}

    @torch.no_grad()
    def learned_sub_rewards(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        dec = self.online.decomposition
        if dec.cfg.mask_gate != "shuffle":  # only the shuffle gate behaves differently in eval mode
            return dec(self.as_tensor(next_obs))["sub_rewards"].cpu().numpy()
        was = dec.training
        dec.eval()
        try:
            return dec(self.as_tensor(next_obs))["sub_rewards"].cpu().numpy()
        finally:
            dec.train(was)

    def vector_target(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, K) of spec §3.3 and the bootstrap action. One target-net pass over s_{t+1..t+n} gives both the
        learned sub-rewards along the window and Q_k(s_{t+n_used}, ·; θ⁻)."""
        b, n = batch.seq_obs.shape[:2]
        with torch.no_grad():
            flat = batch.seq_obs.flatten(0, 1)
            r_hat = self.target.sub_rewards(flat).view(b, n, -1)  # (B, n, K)
            alive = batch.seq_alive.to(r_hat.dtype)
            powers = self.cfg.gamma ** torch.arange(n, device=r_hat.device, dtype=r_hat.dtype)
            ret = (r_hat * (alive * powers).unsqueeze(-1)).sum(1)  # (B, K)
            next_obs_q = self.target(batch.next_obs)["q"]  # (B, K, A) at s_{t+n_used}
            if self.cfg.double:
                a_next = self.online(batch.next_obs)["q"].sum(1).argmax(1)
            else:
                a_next = next_obs_q.sum(1).argmax(1)  # argmax of the SUM of the heads (not per head)
            boot = next_obs_q[torch.arange(b), :, a_next]  # (B, K)
            return ret + batch.discount[:, None] * boot, a_next

    def loss(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        c = self.cfg
        out = self.online(batch.obs)
        q = out["q"][torch.arange(len(batch.action)), :, batch.action]  # (B, K)
        y, _ = self.vector_target(batch)
        per_sample_q = td_loss(q, y, c.loss).sum(1)
        metrics = {"L_Q": float(per_sample_q.detach().mean()), "q": float(q.detach().sum(1).mean())}
        if c.mode == "aux":
            with torch.no_grad():
                nxt = self.target(batch.next_obs)["logits"]
                probs = F.softmax(nxt, -1)
                a_next = (self.action_values(self.online, batch.next_obs) if c.double
                          else (probs * self.z).sum(-1)).argmax(1)
                target = project(probs[torch.arange(len(a_next)), a_next], self.z, batch.returns, batch.discount,
                                 c.v_min, c.v_max, c.atoms)
            per_sample_c51 = c51_loss(out["logits"], batch.action, target)
            per_sample = per_sample_c51 + c.lambda_sub * per_sample_q
            priority = per_sample_c51.detach()
            metrics["td_loss"] = float(per_sample_c51.detach().mean())
        else:
            per_sample = per_sample_q
            priority = (q - y).sum(1).abs().detach()  # PER on the summed TD error (spec §3.3 A)
        loss = (batch.weights * per_sample).mean()
        # the decomposition, on its own reward-balanced batch of transitions (s_{t+1}, clipped r_t)
        dec_obs = batch.extra.get("dec_obs", batch.seq_obs[:, 0])
        dec_reward = batch.extra.get("dec_reward", batch.reward)
        dec_out = self.online.decomposition(dec_obs)
        l_dec, dec_logs = decomposition_loss(dec_out, dec_reward, self.online.decomposition.cfg)
        metrics.update(dec_logs)
        return loss + c.dec_weight * l_dec, priority, metrics
