"""The RD² agent (spec §3.3): a reward decomposition learned jointly from replay, and one Q head per channel that
reads the channel's masked representation x(s) ⊙ m_k(s).

    L_Q = E ‖Q(s_t, a_t; θ) − y‖²,   y_k = Σ_{j<n} γ^j r̂_k(s_{t+j+1}) + γ^n Q_k(s_{t+n}, a′; θ⁻),
    a′ = argmax_a Σ_k Q_k(s_{t+n}, a; θ⁻)            (argmax of the *sum*, not per head as in HRA)

The agent acts greedily on Σ_k Q_k. r̂ comes from the decomposition with no gradient (TD gradients are stopped at
the reward heads); the decomposition itself is trained by L_dec (rd2.decomposition, §3.2) on a reward-balanced
batch of the same replay, so it does not depend on the policy. The torso is shared: L_Q and L_dec both shape it.

The decomposition is trained the way `rd2 decompose` trains it (rd2.config.DecomposeConfig): the target is the
scaled raw reward r / max|r| (``reward_target="scaled"``; max over the replay when the first reward arrives), the
batches are balanced over raw reward values, and the sign prior ``head_signs="auto"`` is set from the signs of
the rewards in the replay (rd2.decompose.auto_signs). ``init_decomposition`` in rd2 train starts the torso, masks
and reward heads from a `rd2 decompose` checkpoint.

Cost per update: one online forward over the TD batch and the decomposition batch together, one target forward
over the window s_{t+1..t+n} (its r̂ and, at s_{t+n_used}, its Q heads), plus an online forward at s_{t+n} with
``double``.

Option (B), ``mode="aux"``: a Rainbow C51 head on the unmasked features learns the total (clipped) reward and
picks the actions; the sub-Q TD loss is an auxiliary objective with weight λ_sub.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rd2.agents.base import Agent, TensorBatch, td_loss
from rd2.agents.distributional import project, support
from rd2.agents.networks import ValueHead
from rd2.agents.rainbow import RainbowConfig, c51_loss
from rd2.config import atari_decomposition
from rd2.decomposition import DecompositionConfig, RewardDecomposition, decomposition_loss, parse_signs
from rd2.torso import make_torso, reinit_


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
    # L_dec on every dec_every-th update only (the others skip the decomposition batch: an online forward over the
    # TD batch alone). 1 = every update (the joint loss of spec §3.3); > 1 is a speed option (benchmarks/sps.py)
    dec_every: int = 1
    # as `rd2 decompose` (rd2.config.DecomposeConfig): balance over raw values, regress r / max|r|; the spec's
    # default (§3.2, UNVERIFIED) is dec_balance=clipped, reward_target=clipped
    dec_balance: str = "raw"  # reward-balanced decomposition batch (raw | clipped | none)
    dec_nonzero_fraction: float = 0.5
    reward_target: str = "scaled"  # scaled: r / max|r| (the learned r̂ and Q_k in those units); clipped: sign(r)
    # width of each sub-Q head's hidden layer; 0 = hidden // K, so the K heads together are as wide as Rainbow's one
    # head (the same capacity and cost; [UNVERIFIED]: the paper's head sizes were not available)
    q_hidden: int = 0
    # r̂ along the n-step window: "learned" r̂_k(s_{t+j+1}) at every step (spec §3.3), or "nonzero": 0 where the
    # observed reward r_{t+j} is 0 (the hard form of L_zero; the target net then runs only on rewarded steps and
    # the bootstrap state)
    window_rewards: str = "learned"
    # He init of the torso and reward heads, as `rd2 decompose` (rd2.torso.reinit_: PyTorch's default init let the
    # decomposition collapse on Atari, issue 18); "torch" keeps PyTorch's default
    dec_init: str = "he"
    decomposition: DecompositionConfig = field(default_factory=atari_decomposition)


class RD2Network(nn.Module):
    """Decomposition (torso, masks, reward heads) + K sub-Q heads on x ⊙ m_k (+ a C51 head in option B).

    One decomposition forward gives the features x, the masks and r̂ of every row; the Q heads then read only the
    rows that need them (:meth:`heads`)."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, cfg: RD2Config, k: int) -> None:
        super().__init__()
        dcfg = dataclasses.replace(cfg.decomposition, K=k)
        if dcfg.head_signs == "auto":  # resolved from the replay once rewards arrive (RD2Agent.prepare)
            dcfg = dataclasses.replace(dcfg, head_signs="")
        if dcfg.action_input:
            raise ValueError("the RD² agent predicts r̂ from s_{t+1} (decomposition.action_input=False)")
        self.n_actions = n_actions
        if len(obs_shape) == 3:  # Atari frames: the Nature torso (rd2.torso), masks over its 64×7×7 feature map
            torso = make_torso(obs_shape)
            n_features, fmap = torso.out_dim, torso.fmap_shape[0]
        else:  # toy: the features are the coordinates themselves (spec §3.1)
            torso, n_features, fmap = None, int(np.prod(obs_shape)), None
        self.decomposition = RewardDecomposition(dcfg, n_features, n_actions, torso, fmap)
        if cfg.dec_init == "he":
            reinit_(self.decomposition.torso)
            for head in self.decomposition.heads:
                reinit_(head)
        elif cfg.dec_init != "torch":
            raise ValueError(f"unknown dec_init {cfg.dec_init!r}: use he or torch")
        hidden = cfg.q_hidden or max(cfg.hidden // k, 1)
        self.q_heads = nn.ModuleList(ValueHead(n_features, n_actions, hidden, 1, cfg.dueling, cfg.noisy, cfg.sigma0)
                                     for _ in range(k))
        self.total_head = (ValueHead(n_features, n_actions, hidden, cfg.atoms, cfg.dueling, cfg.noisy, cfg.sigma0)
                           if cfg.mode == "aux" else None)
        self.stop_mask_grad = cfg.stop_mask_grad

    def heads(self, features: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """``q`` (B, K, A) from the masked features; ``logits`` (B, A, atoms) of the total head in option B."""
        if self.stop_mask_grad:
            masks = masks.detach()
        q = torch.stack([head(features * masks[:, k]).squeeze(-1) for k, head in enumerate(self.q_heads)], dim=1)
        out = {"q": q}
        if self.total_head is not None:
            out["logits"] = self.total_head(features)
        return out

    def forward(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``q``, ``masks`` (B, K, N), ``features`` (B, N), ``sub_rewards`` (B, K) [, ``logits``]."""
        dec = self.decomposition(obs)
        return {**dec, **self.heads(dec["features"], dec["masks"])}

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
        if self.cfg.window_rewards not in ("learned", "nonzero"):
            raise ValueError(f"unknown window_rewards {self.cfg.window_rewards!r}: use learned or nonzero")
        if self.cfg.reward_target not in ("scaled", "clipped"):
            raise ValueError(f"unknown reward_target {self.cfg.reward_target!r}: use scaled or clipped")
        self.z = support(self.cfg.v_min, self.cfg.v_max, self.cfg.atoms, self.device)
        self.reward_scale = 0.0  # 0 = not set yet (no reward seen); scaled target r / reward_scale
        self.auto_signs = self.cfg.decomposition.head_signs == "auto"
        if self.auto_signs:
            self.set_head_signs("")

    def build(self) -> nn.Module:
        return RD2Network(self.obs_shape, self.n_actions, self.cfg, self.num_components)

    # --- the decomposition's reward target and sign prior (what `rd2 decompose` does) ---------------------------
    def set_head_signs(self, signs: str) -> None:
        dcfg = dataclasses.replace(self.cfg.decomposition, head_signs=signs)
        signs_list = parse_signs(signs, self.num_components)
        self.cfg = dataclasses.replace(self.cfg, decomposition=dataclasses.replace(dcfg, K=self.num_components))
        for net in (self.online, self.target):
            net.decomposition.cfg = dataclasses.replace(net.decomposition.cfg, head_signs=signs)
            net.decomposition.signs = signs_list

    def prepare(self, replay: Any) -> None:
        """Before an update: once the replay holds a nonzero reward, fix the reward scale (max |raw reward|, as
        rd2.decompose.reward_scale) and resolve ``head_signs=auto`` (rd2.decompose.auto_signs)."""
        if self.reward_scale > 0 and not self.auto_signs:
            return
        buf = replay.buffer
        raw = buf.reward_raw.reshape(-1)[buf.valid_indices()]
        if not (raw != 0).any():
            return
        from rd2.decompose import auto_signs

        if self.reward_scale <= 0:
            self.reward_scale = float(np.abs(raw).max()) if self.cfg.reward_target == "scaled" else 1.0
        if self.auto_signs:
            self.set_head_signs(auto_signs(buf, self.num_components))
            self.auto_signs = False

    def wants_reward_batch(self, update: int) -> bool:
        return update % self.cfg.dec_every == 0

    def reward_batch_kwargs(self) -> dict[str, Any]:
        c = self.cfg
        return {"balance": c.dec_balance, "nonzero_fraction": c.dec_nonzero_fraction, "target": c.reward_target,
                "scale": self.reward_scale if self.reward_scale > 0 else 1.0}

    def init_decomposition(self, state: dict[str, torch.Tensor]) -> None:
        """Start torso, masks and reward heads (online and target) from a `rd2 decompose` model state dict."""
        for net in (self.online, self.target):
            net.decomposition.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reward_scale": self.reward_scale,
                "head_signs": self.cfg.decomposition.head_signs, "auto_signs": self.auto_signs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.reward_scale = float(state.get("reward_scale", 1.0))
        self.set_head_signs(str(state.get("head_signs", self.cfg.decomposition.head_signs)))
        self.auto_signs = bool(state.get("auto_signs", False))

    # --- acting ----------------------------------------------------------------------------------------------
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

    def _values(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg.mode == "aux":
            return (F.softmax(out["logits"], -1) * self.z).sum(-1)
        return out["q"].sum(1)

    def action_values(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return self._values(net(obs))

    def acting_values(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.online(obs)
        # the shuffle gate fills closed features from other rows in train mode: r̂ for logging needs eval mode
        gate_ok = self.online.decomposition.cfg.mask_gate != "shuffle" or not self.online.training
        return self._values(out), out["sub_rewards"] if gate_ok else None

    def components(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.online(obs)
        return {"q": out["q"], "masks": out["masks"]}

    @torch.no_grad()
    def learned_sub_rewards(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        dec = self.online.decomposition
        was = dec.training
        dec.eval()  # only the shuffle gate behaves differently in eval mode
        try:
            return dec(self.as_tensor(next_obs))["sub_rewards"].cpu().numpy()
        finally:
            dec.train(was)

    # --- learning --------------------------------------------------------------------------------------------
    def window_target(self, batch: TensorBatch) -> dict[str, torch.Tensor]:
        """One target-net pass over s_{t+1..t+n}: the learned sub-rewards along the window, and the heads at
        s_{t+n_used} (the bootstrap state is inside the window)."""
        b, n = batch.seq_obs.shape[:2]
        flat = batch.seq_obs.flatten(0, 1)
        rows = torch.arange(b, device=batch.n_used.device) * n + (batch.n_used - 1).clamp(min=0)
        if self.cfg.window_rewards == "learned":
            out = self.target.decomposition(flat)
            heads = self.target.heads(out["features"][rows], out["masks"][rows])
            return {"r_hat": out["sub_rewards"].view(b, n, -1), **heads}
        # "nonzero": one pass over the bootstrap states and the rewarded window steps only
        rewarded = torch.nonzero(batch.seq_reward.flatten() != 0).flatten()
        out = self.target.decomposition(flat[torch.cat([rows, rewarded])])
        heads = self.target.heads(out["features"][:b], out["masks"][:b])
        r_hat = out["sub_rewards"].new_zeros(b * n, self.num_components)
        r_hat[rewarded] = out["sub_rewards"][b:]
        return {"r_hat": r_hat.view(b, n, -1), **heads}

    def vector_target(self, batch: TensorBatch, window: dict[str, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, K) of spec §3.3 and the bootstrap action a′."""
        with torch.no_grad():
            window = window if window is not None else self.window_target(batch)
            r_hat = window["r_hat"]  # (B, n, K)
            n = r_hat.shape[1]
            alive = batch.seq_alive.to(r_hat.dtype)
            powers = self.cfg.gamma ** torch.arange(n, device=r_hat.device, dtype=r_hat.dtype)
            ret = (r_hat * (alive * powers).unsqueeze(-1)).sum(1)  # (B, K): the n-step weights of the replay
            next_q = window["q"]  # (B, K, A) at s_{t+n_used}
            if self.cfg.double:
                a_next = self.online(batch.next_obs)["q"].sum(1).argmax(1)
            else:
                a_next = next_q.sum(1).argmax(1)  # argmax of the SUM of the heads (not per head)
            boot = next_q[torch.arange(len(a_next)), :, a_next]  # (B, K)
            return ret + batch.discount[:, None] * boot, a_next

    def loss(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        c = self.cfg
        b = len(batch.action)
        # L_dec on this update: with dec_every > 1 the trainer gives a decomposition batch only every dec_every-th
        # update (wants_reward_batch); without one, dec_every = 1 falls back to the window's (s_{t+1}, r_t)
        with_dec = "dec_obs" in batch.extra or c.dec_every == 1
        dec_obs = batch.extra.get("dec_obs", batch.seq_obs[:, 0])
        dec_reward = batch.extra.get("dec_reward", batch.reward)
        # one online forward over the TD batch and the decomposition batch
        out = self.online.decomposition(torch.cat([batch.obs, dec_obs.to(batch.obs.dtype)]) if with_dec else batch.obs)
        heads = self.online.heads(out["features"][:b], out["masks"][:b])
        q = heads["q"][torch.arange(b), :, batch.action]  # (B, K)
        window = None
        with torch.no_grad():
            window = self.window_target(batch)
        y, _ = self.vector_target(batch, window)
        per_sample_q = td_loss(q, y, c.loss).sum(1)
        metrics = {"L_Q": float(per_sample_q.detach().mean()), "q": float(q.detach().sum(1).mean())}
        if c.mode == "aux":
            with torch.no_grad():
                probs = F.softmax(window["logits"], -1)
                a_next = (self.action_values(self.online, batch.next_obs) if c.double
                          else (probs * self.z).sum(-1)).argmax(1)
                target = project(probs[torch.arange(b), a_next], self.z, batch.returns, batch.discount,
                                 c.v_min, c.v_max, c.atoms)
            per_sample_c51 = c51_loss(heads["logits"], batch.action, target)
            per_sample = per_sample_c51 + c.lambda_sub * per_sample_q
            priority = per_sample_c51.detach()
            metrics["td_loss"] = float(per_sample_c51.detach().mean())
        else:
            per_sample = per_sample_q
            priority = (q - y).sum(1).abs().detach()  # PER on the summed TD error (spec §3.3 A)
        loss = (batch.weights * per_sample).mean()
        if not with_dec:
            return loss, priority, metrics
        # the decomposition, on its own reward-balanced batch of transitions (s_{t+1}, reward target)
        dec_out = {key: out[key][b:] for key in ("sub_rewards", "masks", "features")}
        l_dec, dec_logs = decomposition_loss(dec_out, dec_reward, self.online.decomposition.cfg)
        metrics.update(dec_logs)
        return loss + c.dec_weight * l_dec, priority, metrics
