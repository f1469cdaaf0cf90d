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
from typing import Any

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
    alive: np.ndarray | None = None  # (B, n) bool: step j of the window is summed

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class ReplayBuffer:
    def __init__(self, capacity: int, num_envs: int = 1, frame_shape: tuple[int, ...] = (84, 84),
                 stack: int = 4, frame_dtype: np.dtype | type = np.uint8, frame_device: Any = None) -> None:
        if capacity < num_envs * (stack + 2):
            raise ValueError(f"capacity {capacity} is too small for {num_envs} env streams")
        self.num_envs, self.stack, self.frame_shape = num_envs, stack, tuple(frame_shape)
        self.cap = capacity // num_envs  # slots per env stream
        shape = (num_envs, self.cap)
        self.frames = np.zeros((*shape, *self.frame_shape), dtype=frame_dtype)
        self.on_device = False  # True: frames in a torch tensor on a device (GPU-resident replay)
        if frame_device is not None:
            self.to_device(frame_device)
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
    def _write_frames(self, env: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Write one frame into the head slot of each (distinct) stream in ``env``; returns the slots written."""
        slot = self.head[env].copy()
        if self.on_device:
            import torch

            self.frames[torch.as_tensor(env), torch.as_tensor(slot)] = torch.as_tensor(
                np.ascontiguousarray(frames)).to(self.frames.device)
        else:
            self.frames[env, slot] = frames
        # This slot and the next stack-1 slots (old data about to be overwritten) no longer have intact stacks.
        self.valid[env[:, None], (slot[:, None] + np.arange(self.stack)) % self.cap] = False
        self.head[env] = (slot + 1) % self.cap
        return slot

    def start(self, env_ids: np.ndarray | list[int], obs: np.ndarray) -> None:
        """Begin an episode in each of ``env_ids`` with its first stacked observation ``obs`` (n, stack, H, W)."""
        env = np.asarray(env_ids, np.int64).reshape(-1)
        obs = np.asarray(obs)
        for j in range(self.stack):
            self._write_frames(env, obs[:, j])
        self.started[env] = True

    def add(self, env_ids: np.ndarray | list[int], action: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Store one transition per env of ``env_ids`` (distinct streams); ``next_obs`` is the stacked s_{t+1}.
        Returns the flat indices of the transitions (vectorized over the envs)."""
        env = np.asarray(env_ids, np.int64).reshape(-1)
        if not self.started[env].all():
            bad = int(env[~self.started[env]][0])
            raise RuntimeError(f"env stream {bad}: call start() with the reset observation before add()")
        slot = (self.head[env] - 1) % self.cap
        r = np.asarray(reward, np.float32).reshape(-1)
        term = np.asarray(terminated, bool).reshape(-1)
        trunc = np.asarray(truncated, bool).reshape(-1)
        self.action[env, slot] = np.asarray(action, np.int64).reshape(-1)
        self.reward_raw[env, slot] = r
        self.reward_clipped[env, slot] = np.sign(r)
        self.terminated[env, slot] = term
        self.truncated[env, slot] = trunc
        self._write_frames(env, np.asarray(next_obs)[:, -1])
        self.valid[env, slot] = True
        self.started[env[term | trunc]] = False  # the next call for these streams must be start()
        self.total_added += len(env)
        return env * self.cap + slot

    # --- reading ---------------------------------------------------------------------------------------------
    def valid_indices(self) -> np.ndarray:
        return np.flatnonzero(self.valid.reshape(-1))

    def sample_indices(self, batch_size: int, rng: np.random.Generator, balance: str | None = None,
                       nonzero_fraction: float = 0.5) -> np.ndarray:
        """Uniform over valid transitions; ``balance='raw'|'clipped'`` draws ``nonzero_fraction`` of the batch
        from nonzero-reward transitions, split equally over the distinct reward values (reward-balanced sampling).
        """
        valid = self.valid.reshape(-1)
        if balance is None:
            idx = np.flatnonzero(valid)
            if len(idx) == 0:
                raise RuntimeError("the replay holds no complete transition yet")
            return idx[rng.integers(0, len(idx), size=batch_size)]
        flat = (self.reward_raw if balance == "raw" else self.reward_clipped).reshape(-1)
        nz_idx = np.flatnonzero(valid & (flat != 0))
        zeros = np.flatnonzero(valid & (flat == 0))
        if len(nz_idx) + len(zeros) == 0:
            raise RuntimeError("the replay holds no complete transition yet")
        if len(nz_idx) == 0:
            return zeros[rng.integers(0, len(zeros), size=batch_size)]
        values = flat[nz_idx]
        uniq, inverse = np.unique(values, return_inverse=True)
        order = np.argsort(inverse, kind="stable")  # nonzero indices grouped by value, in index order
        counts = np.bincount(inverse, minlength=len(uniq))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        n_nz = batch_size if len(zeros) == 0 else round(batch_size * nonzero_fraction)
        which = rng.integers(0, len(uniq), size=n_nz)
        # per group, draws in the order of the groups (the same draws as one rng.integers call per group)
        parts = [nz_idx[order[starts[g] + rng.integers(0, counts[g], size=int((which == g).sum()))]]
                 for g in range(len(uniq))]
        if batch_size - n_nz:
            parts.append(zeros[rng.integers(0, len(zeros), size=batch_size - n_nz)])
        out = np.concatenate(parts)
        return out[rng.permutation(len(out))]

    def _split(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        return indices // self.cap, indices % self.cap

    def next_index(self, indices: np.ndarray, k: int = 1) -> np.ndarray:
        env, slot = self._split(indices)
        return env * self.cap + (slot + k) % self.cap

    def obs(self, indices: np.ndarray):
        """Stacked observations ending at each slot: (B, stack, H, W), a numpy array (a torch tensor on the
        replay's device when the frames live there)."""
        env, slot = self._split(indices)
        window = (slot[:, None] + np.arange(1 - self.stack, 1)) % self.cap
        if self.on_device:
            import torch

            dev = self.frames.device
            return self.frames[torch.as_tensor(env[:, None], device=dev), torch.as_tensor(window, device=dev)]
        return self.frames[env[:, None], window]

    def get(self, indices: np.ndarray, n_step: int = 1, gamma: float = 0.99) -> Batch:
        """Transitions at ``indices``; with ``n_step`` > 1 the returns are summed over up to n steps, stopping at
        the end of an episode or of the stored data (:func:`nstep_return`), and ``next_obs`` is the observation
        n_used steps later."""
        indices = np.asarray(indices, np.int64)
        if not self.valid.reshape(-1)[indices].all():
            raise IndexError("some indices are not valid transitions (see valid_indices())")
        env, slot = self._split(indices)
        window = (slot[:, None] + np.arange(n_step)) % self.cap  # (B, n) slots t..t+n-1
        e = env[:, None]
        term_w, trunc_w = self.terminated[e, window], self.truncated[e, window]
        rewards = np.stack([self.reward_raw[e, window], self.reward_clipped[e, window]], axis=-1)
        g, discount, n_used, alive = nstep_return(rewards, term_w, trunc_w, gamma, valid=self.valid[e, window])
        term = (term_w & alive).any(1)
        trunc = (trunc_w & alive).any(1) & ~term
        next_slot = (slot + n_used) % self.cap
        return Batch(obs=self.obs(indices), action=self.action[env, slot].copy(),
                     reward_raw=self.reward_raw[env, slot].copy(), reward_clipped=self.reward_clipped[env, slot].copy(),
                     next_obs=self.obs(env * self.cap + next_slot), terminated=term, truncated=trunc,
                     return_raw=g[:, 0], return_clipped=g[:, 1], discount=discount, n_used=n_used, alive=alive)

    # --- persistence -----------------------------------------------------------------------------------------
    _arrays = ("frames", "action", "reward_raw", "reward_clipped", "terminated", "truncated", "valid", "head",
               "started")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole store to one ``.npz`` (atomic rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays = {k: getattr(self, k) for k in self._arrays}
        if self.on_device:
            arrays["frames"] = self.frames.cpu().numpy()
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
        buf.on_device = False
        return buf

    def to_device(self, device: Any) -> None:
        """Keep the frames in a torch tensor on ``device`` (e.g. CUDA: sampling then gathers stacks on the GPU and
        only indices cross the bus); the small per-slot arrays stay in numpy."""
        import torch

        frames = self.frames.cpu().numpy() if self.on_device else self.frames
        self.frames = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
        self.on_device = True


def discounted_sum(values: np.ndarray, alive: np.ndarray, gamma: float) -> np.ndarray:
    """Σ_j γ^j · alive_j · values_j over axis 1 of (B, n) or (B, n, K) values."""
    weight = (alive * gamma ** np.arange(alive.shape[1], dtype=np.float64)).astype(np.float32)
    return (values * (weight[..., None] if values.ndim == 3 else weight)).sum(1, dtype=np.float32)


def nstep_return(rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, gamma: float,
                 valid: np.ndarray | None = None, bootstrap_truncated: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n-step return of windows of n transitions, cut at the first episode end (the one n-step implementation:
    the replay's returns, HRA's given sub-returns and RD²'s learned ones all use its ``alive`` weights).

    rewards: (B, n) or (B, n, K); terminated / truncated: (B, n) bool flags of transition j; valid: (B, n) bool,
    transition j is stored (the window also stops at the newest data). Returns ``(G, discount, steps, alive)``:
    G = Σ_{j<steps} γ^j r_j, discount = γ^steps (0 after a termination, and after a truncation unless
    ``bootstrap_truncated``), steps = transitions used (the bootstrap state is s_{t+steps}), alive (B, n).
    """
    ended = terminated | truncated
    alive = np.ones(ended.shape, bool)
    alive[:, 1:] = ~np.logical_or.accumulate(ended[:, :-1], axis=1)  # no episode end strictly before j
    if valid is not None:
        alive &= np.logical_and.accumulate(valid, axis=1)
    g = discounted_sum(rewards, alive, gamma)
    steps = alive.sum(1).astype(np.int64)
    cut = (terminated & alive).any(1)
    if not bootstrap_truncated:
        cut |= (truncated & alive).any(1)
    discount = np.where(cut, 0.0, gamma ** steps.astype(np.float64)).astype(np.float32)
    return g, discount, steps, alive
