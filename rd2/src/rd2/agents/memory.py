"""The agents' replay: the single-frame :class:`rd2.replay.ReplayBuffer` (n-step returns, raw + clipped rewards)
plus what the agents add on top: prioritized sampling (sum tree), given sub-rewards (HRA), the s_{t+1..t+n}
window (RD²'s learned sub-rewards along the n-step return), and conversion to a device :class:`TensorBatch`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from neurips20_common import UserError

from rd2.agents.base import TensorBatch
from rd2.agents.prioritized import PrioritizedSampler
from rd2.replay import ReplayBuffer


class AgentReplay:
    def __init__(self, capacity: int, obs_shape: tuple[int, ...], num_envs: int = 1, n_step: int = 1,
                 gamma: float = 0.99, prioritized: bool = False, alpha: float = 0.5, num_sub_rewards: int = 0,
                 sequence: bool = False) -> None:
        self.obs_shape = tuple(obs_shape)
        self.image = len(self.obs_shape) == 3  # (stack, H, W) uint8 frames, else a flat float vector (stack 1)
        if self.image:
            self.buffer = ReplayBuffer(capacity, num_envs, self.obs_shape[1:], self.obs_shape[0], np.uint8)
        else:
            self.buffer = ReplayBuffer(capacity, num_envs, self.obs_shape, 1, np.float32)
        self.n_step, self.gamma, self.sequence = n_step, gamma, sequence
        self.sampler = PrioritizedSampler(self.buffer.capacity, alpha) if prioritized else None
        self.sub = np.zeros((self.buffer.capacity, num_sub_rewards), np.float32) if num_sub_rewards else None

    def __len__(self) -> int:
        return len(self.buffer)

    def _stacked(self, obs: np.ndarray) -> np.ndarray:
        return obs if self.image else obs[:, None]

    def _unstacked(self, obs: np.ndarray) -> np.ndarray:
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
        for env in np.asarray(env_ids).reshape(-1):
            slots = (buf.head[env] + np.arange(-2, buf.stack + 1)) % buf.cap
            flat = env * buf.cap + slots
            stale = flat[~buf.valid.reshape(-1)[flat] & (self.sampler.tree.get(flat) > 0)]
            if len(stale):
                self.sampler.invalidate(stale)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device,
               beta: float = 0.4) -> TensorBatch:
        if self.sampler is not None:
            idx, weights = self.sampler.sample(batch_size, beta, rng)
        else:
            idx, weights = self.buffer.sample_indices(batch_size, rng), np.ones(batch_size)
        return self.batch(idx, device, weights)

    def reward_batch(self, batch_size: int, rng: np.random.Generator, device: torch.device, balance: str = "clipped",
                     nonzero_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_{t+1}, clipped r_t) of transitions drawn for the decomposition, reward-balanced unless
        ``balance='none'``: the reward-balanced sampling of rd2.replay (spec §10.5)."""
        idx = self.buffer.sample_indices(batch_size, rng, None if balance == "none" else balance, nonzero_fraction)
        nxt = self._unstacked(self.buffer.obs(self.buffer.next_index(idx)))
        reward = self.buffer.reward_clipped.reshape(-1)[idx]
        return (torch.as_tensor(np.ascontiguousarray(nxt), device=device),
                torch.as_tensor(reward, device=device))

    def batch(self, idx: np.ndarray, device: torch.device, weights: np.ndarray | None = None) -> TensorBatch:
        b = self.buffer.get(idx, self.n_step, self.gamma)

        def t(x: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(x), device=device, dtype=dtype)

        out = TensorBatch(
            obs=t(self._unstacked(b.obs)), action=t(b.action), returns=t(b.return_clipped), next_obs=t(
                self._unstacked(b.next_obs)), discount=t(b.discount), weights=t(
                np.ones(len(idx)) if weights is None else weights, torch.float32), reward=t(b.reward_clipped),
            reward_raw=t(b.reward_raw), n_used=t(b.n_used))
        steps = [np.asarray(idx, np.int64)]
        for _ in range(self.n_step):
            steps.append(self.buffer.next_index(steps[-1]))
        alive = np.arange(self.n_step)[None, :] < b.n_used[:, None]  # (B, n)
        if self.sub is not None:
            powers = self.gamma ** np.arange(self.n_step, dtype=np.float32)
            window = np.stack([self.sub[s] for s in steps[:-1]], axis=1)  # (B, n, K)
            out.sub_returns = t((window * (alive * powers)[..., None]).sum(1).astype(np.float32))
        if self.sequence:
            seq = np.stack([self._unstacked(self.buffer.obs(s)) for s in steps[1:]], axis=1)  # s_{t+1..t+n}
            acts = np.stack([self.buffer.action.reshape(-1)[s] for s in steps[:-1]], axis=1)
            out.seq_obs, out.seq_action, out.seq_alive = t(seq), t(acts), t(alive)
        out.extra["index"] = t(np.asarray(idx, np.int64))
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
        if loaded.capacity != self.buffer.capacity or loaded.frames.shape[2:] != self.buffer.frames.shape[2:]:
            raise UserError(f"replay {path} has capacity {loaded.capacity} and frames {loaded.frames.shape[2:]}, "
                            f"the run wants {self.buffer.capacity} and {self.buffer.frames.shape[2:]}")
        self.buffer = loaded
        with np.load(path.with_suffix(".extra.npz")) as data:
            if self.sub is not None:
                self.sub[:] = data["sub"]
            if self.sampler is not None:
                self.sampler.tree.tree[:] = data["tree"]
                self.sampler.max_priority = float(data["max_priority"])
