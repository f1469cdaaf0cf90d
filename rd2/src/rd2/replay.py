"""Replay store with single-frame storage (spec §7.4): stacks are rebuilt when sampling.

Each of the ``num_envs`` streams is a ring of ``capacity // num_envs`` slots. A slot holds one 84×84 frame (the
newest frame of the stacked observation at that time step); the stacked observation of slot j is frames j-3..j.
An episode starts with the 4 frames of its first stacked observation (3 padding slots + 1), so stacks never cross
an episode boundary and the padding is whatever the env produced. When a transition (s_t, a_t, r_t, s_{t+1}) is
added, a_t, the **raw** reward, the **clipped** reward sign(r), and the terminated / truncated flags go into slot t
and the frame of s_{t+1} into slot t+1; slot t becomes a valid sample. The final observation of an episode is
stored too, so truncated episodes can bootstrap and the reward of the last transition can be predicted from s_{t+1}.

Indices are flat ints ``env * capacity_per_env + slot``. Layers on top (n-step returns, prioritized sampling) use
``add`` (returns the indices it made valid), ``valid_indices``, ``sample_indices``, ``get`` and ``next_index``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from neurips20_common import UserError


@dataclass
class Batch:
    obs: np.ndarray  # (B, stack, H, W) uint8, s_t
    action: np.ndarray  # (B,) int64
    reward_raw: np.ndarray  # (B,) float32, game score change
    reward_clipped: np.ndarray  # (B,) float32, sign(raw)
    next_obs: np.ndarray  # (B, stack, H, W) uint8: s_{t+1}, or s_{t+n} with n_step > 1
    terminated: np.ndarray  # (B,) bool: the episode ended at t (or within the n steps)
    truncated: np.ndarray  # (B,) bool: cut by a time limit at t (or within the n steps): bootstrap
    # n-step fields (equal to the 1-step ones when n_step == 1)
    return_raw: np.ndarray  # (B,) float32, Σ_i γ^i r_raw_{t+i}
    return_clipped: np.ndarray  # (B,) float32, Σ_i γ^i sign(r_{t+i})
    discount: np.ndarray  # (B,) float32, γ^n_used · (1 − terminated): multiply the bootstrap value by this
    n_used: np.ndarray  # (B,) int64, steps actually summed (stops at episode end / newest data)

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class ReplayBuffer:
    def __init__(self, capacity: int, num_envs: int = 1, frame_shape: tuple[int, ...] = (84, 84),
                 stack: int = 4, frame_dtype: np.dtype | type = np.uint8) -> None:
        if capacity < num_envs * (stack + 2):
            raise ValueError(f"capacity {capacity} is too small for {num_envs} env streams")
        self.num_envs, self.stack, self.frame_shape = num_envs, stack, tuple(frame_shape)
        self.cap = capacity // num_envs  # slots per env stream
        shape = (num_envs, self.cap)
        self.frames = np.zeros((*shape, *self.frame_shape), dtype=frame_dtype)
        self.action = np.zeros(shape, np.int64)
        self.reward_raw = np.zeros(shape, np.float32)
        self.reward_clipped = np.zeros(shape, np.float32)
        self.terminated = np.zeros(shape, bool)
        self.truncated = np.zeros(shape, bool)
        self.valid = np.zeros(shape, bool)  # slot holds a complete transition whose frames are all current
        self.head = np.zeros(num_envs, np.int64)  # next slot to write, per stream
        self.started = np.zeros(num_envs, bool)
        self.total_added = 0

    @property
    def capacity(self) -> int:
        return self.num_envs * self.cap

    def __len__(self) -> int:
        return int(self.valid.sum())

    # --- writing ---------------------------------------------------------------------------------------------
    def _write_frame(self, env: int, frame: np.ndarray) -> int:
        slot = int(self.head[env])
        self.frames[env, slot] = frame
        # This slot and the next stack-1 slots (old data about to be overwritten) no longer have intact stacks.
        self.valid[env, (slot + np.arange(self.stack)) % self.cap] = False
        self.head[env] = (slot + 1) % self.cap
        return slot

    def start(self, env_ids: np.ndarray | list[int], obs: np.ndarray) -> None:
        """Begin an episode in each of ``env_ids`` with its first stacked observation ``obs`` (n, stack, H, W)."""
        for env, o in zip(np.asarray(env_ids).reshape(-1), obs, strict=True):
            for frame in o:
                self._write_frame(int(env), frame)
            self.started[env] = True

    def add(self, env_ids: np.ndarray | list[int], action: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Store transitions of ``env_ids`` (one per env); ``next_obs`` is the stacked s_{t+1}. Returns indices."""
        env_ids = np.asarray(env_ids, np.int64).reshape(-1)
        out = np.empty(len(env_ids), np.int64)
        for i, env in enumerate(env_ids):
            if not self.started[env]:
                raise RuntimeError(f"env stream {env}: call start() with the reset observation before add()")
            slot = int(self.head[env] - 1) % self.cap
            r = float(reward[i])
            self.action[env, slot] = int(action[i])
            self.reward_raw[env, slot] = r
            self.reward_clipped[env, slot] = np.sign(r)
            self.terminated[env, slot] = bool(terminated[i])
            self.truncated[env, slot] = bool(truncated[i])
            self._write_frame(int(env), next_obs[i][-1])
            self.valid[env, slot] = True
            out[i] = env * self.cap + slot
            if terminated[i] or truncated[i]:
                self.started[env] = False  # the next call for this stream must be start()
        self.total_added += len(env_ids)
        return out

    # --- reading ---------------------------------------------------------------------------------------------
    def valid_indices(self) -> np.ndarray:
        return np.flatnonzero(self.valid.reshape(-1))

    def sample_indices(self, batch_size: int, rng: np.random.Generator, balance: str | None = None,
                       nonzero_fraction: float = 0.5) -> np.ndarray:
        """Uniform over valid transitions; ``balance='raw'|'clipped'`` draws ``nonzero_fraction`` of the batch
        from nonzero-reward transitions, split equally over the distinct reward values (reward-balanced sampling).
        """
        idx = self.valid_indices()
        if len(idx) == 0:
            raise RuntimeError("the replay holds no complete transition yet")
        if balance is None:
            return idx[rng.integers(0, len(idx), size=batch_size)]
        values = (self.reward_raw if balance == "raw" else self.reward_clipped).reshape(-1)[idx]
        nonzero = values != 0
        if not nonzero.any():
            return idx[rng.integers(0, len(idx), size=batch_size)]
        groups = [idx[values == v] for v in np.unique(values[nonzero])]
        zeros = idx[~nonzero]
        n_nz = batch_size if len(zeros) == 0 else round(batch_size * nonzero_fraction)
        which = rng.integers(0, len(groups), size=n_nz)
        parts = [g[rng.integers(0, len(g), size=int((which == i).sum()))] for i, g in enumerate(groups)]
        if batch_size - n_nz:
            parts.append(zeros[rng.integers(0, len(zeros), size=batch_size - n_nz)])
        out = np.concatenate(parts)
        return out[rng.permutation(len(out))]

    def _split(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        return indices // self.cap, indices % self.cap

    def next_index(self, indices: np.ndarray) -> np.ndarray:
        env, slot = self._split(indices)
        return env * self.cap + (slot + 1) % self.cap

    def obs(self, indices: np.ndarray) -> np.ndarray:
        """Stacked observations ending at each slot: (B, stack, H, W)."""
        env, slot = self._split(indices)
        window = (slot[:, None] + np.arange(1 - self.stack, 1)) % self.cap
        return self.frames[env[:, None], window]

    def get(self, indices: np.ndarray, n_step: int = 1, gamma: float = 0.99) -> Batch:
        """Transitions at ``indices``; with ``n_step`` > 1 the returns are summed over up to n steps, stopping at
        the end of an episode or of the stored data, and ``next_obs`` is the observation n_used steps later."""
        indices = np.asarray(indices, np.int64)
        if not self.valid.reshape(-1)[indices].all():
            raise IndexError("some indices are not valid transitions (see valid_indices())")
        env, slot = self._split(indices)
        b = len(indices)
        ret_raw = np.zeros(b, np.float32)
        ret_clip = np.zeros(b, np.float32)
        term = np.zeros(b, bool)
        trunc = np.zeros(b, bool)
        n_used = np.zeros(b, np.int64)
        last = slot.copy()
        active = np.ones(b, bool)
        for i in range(n_step):
            s = (slot + i) % self.cap
            ok = active & self.valid[env, s] if i else active
            disc = gamma**i
            ret_raw[ok] += disc * self.reward_raw[env[ok], s[ok]]
            ret_clip[ok] += disc * self.reward_clipped[env[ok], s[ok]]
            term[ok] |= self.terminated[env[ok], s[ok]]
            trunc[ok] |= self.truncated[env[ok], s[ok]]
            last[ok] = s[ok]
            n_used[ok] += 1
            active = ok & ~self.terminated[env, s] & ~self.truncated[env, s]
        next_slot = (last + 1) % self.cap
        discount = (gamma**n_used * ~term).astype(np.float32)
        return Batch(obs=self.obs(indices), action=self.action[env, slot].copy(),
                     reward_raw=self.reward_raw[env, slot].copy(), reward_clipped=self.reward_clipped[env, slot].copy(),
                     next_obs=self.obs(env * self.cap + next_slot), terminated=term, truncated=trunc & ~term,
                     return_raw=ret_raw, return_clipped=ret_clip, discount=discount, n_used=n_used)

    # --- persistence -----------------------------------------------------------------------------------------
    _arrays = ("frames", "action", "reward_raw", "reward_clipped", "terminated", "truncated", "valid", "head",
               "started")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole store to one ``.npz`` (atomic rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {k: getattr(self, k) for k in self._arrays}
        np.savez(tmp, total_added=np.int64(self.total_added), stack=np.int64(self.stack), **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        path = Path(path)
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in cls._arrays}
                total, stack = int(data["total_added"]), int(data["stack"])
        except FileNotFoundError:
            raise UserError(f"replay file {path} does not exist") from None
        except Exception as exc:
            raise UserError(f"replay file {path} is corrupt or not a replay store ({type(exc).__name__}: {exc}); "
                            "delete it to collect again") from None
        num_envs, cap = arrays["frames"].shape[:2]
        buf = cls.__new__(cls)
        buf.num_envs, buf.cap, buf.frame_shape = num_envs, cap, arrays["frames"].shape[2:]
        buf.stack = stack
        for k, v in arrays.items():
            setattr(buf, k, v)
        buf.total_added = total
        return buf
