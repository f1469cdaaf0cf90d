"""The agents' replay: the single-frame :class:`rd2.replay.ReplayBuffer` (n-step returns, raw + clipped rewards)
plus what the agents add on top: prioritized sampling (sum tree), given sub-rewards (HRA), the s_{t+1..t+n}
window (RD²'s learned sub-rewards along the n-step return), the decomposition's reward-balanced batch, and
conversion to a device :class:`TensorBatch`. Every step is vectorized over the batch (no Python loop per sample);
with ``frame_device`` the frames live on that device (GPU-resident replay) and batches are gathered there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from neurips20_common import UserError

from rd2.agents.base import TensorBatch
from rd2.agents.prioritized import PrioritizedSampler
from rd2.replay import ReplayBuffer, discounted_sum


class AgentReplay:
    def __init__(self, capacity: int, obs_shape: tuple[int, ...], num_envs: int = 1, n_step: int = 1,
                 gamma: float = 0.99, prioritized: bool = False, alpha: float = 0.5, num_sub_rewards: int = 0,
                 sequence: bool = False, frame_device: Any = None) -> None:
        self.obs_shape = tuple(obs_shape)
        self.image = len(self.obs_shape) == 3  # (stack, H, W) uint8 frames, else a flat float vector (stack 1)
        if self.image:
            self.buffer = ReplayBuffer(capacity, num_envs, self.obs_shape[1:], self.obs_shape[0], np.uint8,
                                       frame_device)
        else:
            self.buffer = ReplayBuffer(capacity, num_envs, self.obs_shape, 1, np.float32, frame_device)
        self.frame_device = frame_device
        self.n_step, self.gamma, self.sequence = n_step, gamma, sequence
        self.sampler = PrioritizedSampler(self.buffer.capacity, alpha) if prioritized else None
        self.sub = np.zeros((self.buffer.capacity, num_sub_rewards), np.float32) if num_sub_rewards else None

    def __len__(self) -> int:
        return len(self.buffer)

    def _stacked(self, obs: np.ndarray) -> np.ndarray:
        return obs if self.image else obs[:, None]

    def _unstacked(self, obs):
        return obs if self.image else obs[:, 0]

    def start(self, env_ids: np.ndarray, obs: np.ndarray) -> None:
        self.buffer.start(env_ids, self._stacked(obs))
        self._sync(env_ids)

    def add(self, env_ids: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray, sub_rewards: np.ndarray | None = None) -> np.ndarray:
        idx = self.buffer.add(env_ids, action, reward, terminated, truncated, self._stacked(next_obs))
        if self.sub is not None:
            if sub_rewards is None:
                raise UserError("this agent needs the env's true sub-rewards (info['sub_rewards']), which only the "
                                "toy game provides; use --env toy")
            self.sub[idx] = sub_rewards
        self._sync(env_ids)
        if self.sampler is not None:
            self.sampler.set_max(idx)
        return idx

    def _sync(self, env_ids: np.ndarray) -> None:
        """Writing a frame breaks the stacks of the next ``stack`` old slots: take them out of the sum tree too."""
        if self.sampler is None:
            return
        buf = self.buffer
        env = np.asarray(env_ids, np.int64).reshape(-1)
        slots = (buf.head[env][:, None] + np.arange(-2, buf.stack + 1)) % buf.cap
        flat = (env[:, None] * buf.cap + slots).reshape(-1)
        stale = flat[~buf.valid.reshape(-1)[flat] & (self.sampler.tree.get(flat) > 0)]
        if len(stale):
            self.sampler.invalidate(np.unique(stale))

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device,
               beta: float = 0.4) -> TensorBatch:
        if self.sampler is not None:
            idx, weights = self.sampler.sample(batch_size, beta, rng)
        else:
            idx, weights = self.buffer.sample_indices(batch_size, rng), np.ones(batch_size)
        return self.batch(idx, device, weights)

    def reward_batch(self, batch_size: int, rng: np.random.Generator, device: torch.device, balance: str = "raw",
                     nonzero_fraction: float = 0.5, target: str = "clipped",
                     scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_{t+1}, reward target) of transitions drawn for the decomposition, reward-balanced over raw or clipped
        values unless ``balance='none'`` (spec §10.5). ``target``: ``clipped`` sign(r) or ``scaled`` r / scale
        (what `rd2 decompose` regresses, rd2.config.DecomposeConfig.reward_target)."""
        idx = self.buffer.sample_indices(batch_size, rng, None if balance == "none" else balance, nonzero_fraction)
        nxt = self._unstacked(self.buffer.obs(self.buffer.next_index(idx)))
        if target == "clipped":
            reward = self.buffer.reward_clipped.reshape(-1)[idx]
        elif target == "scaled":
            reward = self.buffer.reward_raw.reshape(-1)[idx] / np.float32(scale)
        else:
            raise ValueError(f"unknown reward target {target!r}: use clipped or scaled")
        return _tensor(nxt, device), torch.as_tensor(reward, device=device)

    def batch(self, idx: np.ndarray, device: torch.device, weights: np.ndarray | None = None) -> TensorBatch:
        idx = np.asarray(idx, np.int64)
        b = self.buffer.get(idx, self.n_step, self.gamma)
        w = np.ones(len(idx)) if weights is None else weights
        out = TensorBatch(
            obs=_tensor(self._unstacked(b.obs), device), action=_tensor(b.action, device),
            returns=_tensor(b.return_clipped, device), next_obs=_tensor(self._unstacked(b.next_obs), device),
            discount=_tensor(b.discount, device), weights=_tensor(w, device, torch.float32),
            reward=_tensor(b.reward_clipped, device), reward_raw=_tensor(b.reward_raw, device),
            n_used=_tensor(b.n_used, device))
        alive = b.alive  # (B, n) from rd2.replay.nstep_return: the one n-step window
        if self.sub is not None:
            steps = self.buffer.next_index(idx[:, None], np.arange(self.n_step)[None, :])  # (B, n) t..t+n-1
            out.sub_returns = _tensor(discounted_sum(self.sub[steps], alive, self.gamma), device)
        if self.sequence:
            after = self.buffer.next_index(idx[:, None], np.arange(1, self.n_step + 1)[None, :])  # t+1..t+n
            seq = self._unstacked(self.buffer.obs(after.reshape(-1)))
            out.seq_obs = _tensor(seq, device).reshape(len(idx), self.n_step, *self.obs_shape)
            out.seq_alive = _tensor(alive, device)
            window = self.buffer.next_index(idx[:, None], np.arange(self.n_step)[None, :])  # t..t+n-1
            out.seq_action = _tensor(self.buffer.action.reshape(-1)[window], device)
            out.seq_reward = _tensor(self.buffer.reward_raw.reshape(-1)[window], device)
        out.extra["index"] = _tensor(idx, device)
        return out

    def update_priorities(self, idx: np.ndarray, priorities: np.ndarray) -> None:
        if self.sampler is not None:
            self.sampler.update(idx, priorities)

    # --- persistence (optional, ``--save-buffer``) --------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        self.buffer.save(path.with_suffix(".buffer.npz"))
        extra: dict[str, np.ndarray] = {}
        if self.sub is not None:
            extra["sub"] = self.sub
        if self.sampler is not None:
            extra["tree"] = self.sampler.tree.tree
            extra["max_priority"] = np.float64(self.sampler.max_priority)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **extra)
        os.replace(tmp, path.with_suffix(".extra.npz"))

    def load(self, path: str | os.PathLike) -> None:
        path = Path(path)
        loaded = ReplayBuffer.load(path.with_suffix(".buffer.npz"))
        if loaded.capacity != self.buffer.capacity or loaded.frames.shape[2:] != tuple(self.buffer.frames.shape[2:]):
            raise UserError(f"replay {path} has capacity {loaded.capacity} and frames {loaded.frames.shape[2:]}, "
                            f"the run wants {self.buffer.capacity} and {tuple(self.buffer.frames.shape[2:])}")
        if self.frame_device is not None:
            loaded.to_device(self.frame_device)
        self.buffer = loaded
        with np.load(path.with_suffix(".extra.npz")) as data:
            if self.sub is not None:
                self.sub[:] = data["sub"]
            if self.sampler is not None:
                self.sampler.tree.tree[:] = data["tree"]
                self.sampler.max_priority = float(data["max_priority"])


def _tensor(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype) if dtype is not None else x.to(device)
    return torch.as_tensor(np.ascontiguousarray(x), device=device, dtype=dtype)
