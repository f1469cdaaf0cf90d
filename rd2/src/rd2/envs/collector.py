"""Step a vector env with NEXT_STEP autoreset and write every real transition into a :class:`ReplayBuffer`.

With NEXT_STEP autoreset (gymnasium ≥ 1.0 and ale-py's native vector env), the step after an episode ends returns
the reset observation of the new episode and ignores the action; that step is an episode start, not a transition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rd2.replay import ReplayBuffer


class Collector:
    def __init__(self, env, replay: ReplayBuffer | None = None, seed: int | None = None) -> None:
        self.env, self.replay = env, replay
        self.num_envs = env.num_envs
        self.obs, _ = env.reset(seed=seed)
        self.resetting = np.zeros(self.num_envs, bool)
        self.ep_return_raw = np.zeros(self.num_envs, np.float64)
        self.ep_return_clipped = np.zeros(self.num_envs, np.float64)
        self.ep_length = np.zeros(self.num_envs, np.int64)
        self.finished: list[dict[str, float]] = []  # episodes finished since the last pop_episodes()
        self.steps = 0  # transitions collected (over all envs)
        if replay is not None:
            replay.start(np.arange(self.num_envs), self.obs)

    def step(self, actions: np.ndarray) -> np.ndarray:
        """One vector step; returns the flat replay indices of the transitions it stored."""
        next_obs, reward, terminated, truncated, _ = self.env.step(np.asarray(actions))
        live = ~self.resetting
        starting = np.flatnonzero(self.resetting)
        ids = np.flatnonzero(live)
        out = np.empty(0, np.int64)
        if self.replay is not None:
            if len(starting):
                self.replay.start(starting, next_obs[starting])
            if len(ids):
                out = self.replay.add(ids, np.asarray(actions)[ids], reward[ids], terminated[ids], truncated[ids],
                                      next_obs[ids])
        self.ep_return_raw[ids] += reward[ids]
        self.ep_return_clipped[ids] += np.sign(reward[ids])
        self.ep_length[ids] += 1
        done = live & (terminated | truncated)
        for i in np.flatnonzero(done):
            self.finished.append({"return_raw": float(self.ep_return_raw[i]),
                                  "return_clipped": float(self.ep_return_clipped[i]),
                                  "length": int(self.ep_length[i])})
        self.ep_return_raw[done] = self.ep_return_clipped[done] = self.ep_length[done] = 0
        self.resetting = done
        self.steps += len(ids)
        self.obs = next_obs
        return out

    def pop_episodes(self) -> list[dict[str, float]]:
        out, self.finished = self.finished, []
        return out

    def run(self, steps: int, policy: Callable[[np.ndarray], np.ndarray], callback=None) -> None:
        """Collect until ``steps`` transitions are stored. ``policy(obs) -> actions``; ``callback(n_new)``."""
        while self.steps < steps:
            before = self.steps
            self.step(policy(self.obs))
            if callback is not None:
                callback(self.steps - before)


def random_policy(action_space, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    n = int(action_space.nvec[0]) if hasattr(action_space, "nvec") else int(action_space.n)

    def act(obs: np.ndarray) -> np.ndarray:
        return rng.integers(0, n, size=len(obs))

    return act
