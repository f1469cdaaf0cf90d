"""The Monster-Treasure toy game (spec §5): a grid with known reward channels, to check a decomposition against.

The agent walks on a ``size × size`` grid (4 moves + stay); then the monster random-walks (or steps toward the agent
with probability ``chase_prob``). Being on the treasure cell pays ``gold`` (+1), sharing a cell with the monster
pays ``monster`` (−1). A collected treasure / a monster that hit the agent stays visible in s_{t+1} and respawns at
a random cell at the start of the next step, so each sub-reward is a deterministic function of s_{t+1}:

    r_gold    = f(a_x, a_y, t_x, t_y)      r_monster = g(a_x, a_y, m_x, m_y)

The observation is the normalized coordinates (a_x, a_y, t_x, t_y, m_x, m_y) ∈ [0, 1]^6, followed by
``distractors`` extra features (uniform noise, the last one a clock t / episode_len) that no reward depends on.
``info["sub_rewards"]`` holds the true (r_gold, r_monster); they sum to the reward.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

# Moves: stay, up, down, left, right (dx, dy).
MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.int64)
CHANNELS = ("gold", "monster")
# True supporting features of each channel (indices into the observation), §5 "True decomposition".
TRUE_MASKS = ((0, 1, 2, 3), (0, 1, 4, 5))


class MonsterTreasureEnv(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, size: int = 8, episode_len: int = 100, magnitudes: tuple[float, float] = (1.0, -1.0),
                 chase_prob: float = 0.0, distractors: int = 0) -> None:
        if size < 3:
            raise ValueError("size must be >= 3")
        self.size, self.episode_len, self.chase_prob = size, episode_len, chase_prob
        self.magnitudes = (float(magnitudes[0]), float(magnitudes[1]))
        self.distractors = distractors
        self.n_features = 6 + distractors
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.n_features,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self.agent = np.zeros(2, np.int64)
        self.treasure = np.zeros(2, np.int64)
        self.monster = np.zeros(2, np.int64)
        self.t = 0
        self._collected = self._caught = False

    def _free_cell(self, *avoid: np.ndarray) -> np.ndarray:
        while True:
            cell = self.np_random.integers(0, self.size, size=2)
            if all((cell != a).any() for a in avoid):
                return cell

    def _obs(self) -> np.ndarray:
        coords = np.concatenate([self.agent, self.treasure, self.monster]) / (self.size - 1)
        extra = self.np_random.random(self.distractors)
        if self.distractors:
            extra[-1] = self.t / self.episode_len
        return np.concatenate([coords, extra]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.agent = self.np_random.integers(0, self.size, size=2)
        self.treasure = self._free_cell(self.agent)
        self.monster = self._free_cell(self.agent, self.treasure)
        self._collected = self._caught = False
        return self._obs(), {"sub_rewards": np.zeros(2, np.float32)}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._collected:
            self.treasure = self._free_cell(self.agent, self.monster)
        if self._caught:
            self.monster = self._free_cell(self.agent, self.treasure)
        self.agent = np.clip(self.agent + MOVES[int(action)], 0, self.size - 1)
        self._move_monster()
        self._collected = bool((self.agent == self.treasure).all())
        self._caught = bool((self.agent == self.monster).all())
        sub = np.array([self.magnitudes[0] * self._collected, self.magnitudes[1] * self._caught], np.float32)
        self.t += 1
        truncated = self.t >= self.episode_len
        return self._obs(), float(sub.sum()), False, truncated, {"sub_rewards": sub}

    def _move_monster(self) -> None:
        if self.np_random.random() < self.chase_prob:
            delta = np.sign(self.agent - self.monster)
            axis = int(self.np_random.integers(0, 2)) if (delta != 0).all() else int(np.argmax(delta != 0))
            step = np.zeros(2, np.int64)
            step[axis] = delta[axis]
        else:
            step = MOVES[int(self.np_random.integers(0, len(MOVES)))]
        self.monster = np.clip(self.monster + step, 0, self.size - 1)


def collect_toy(env: MonsterTreasureEnv, steps: int, seed: int) -> dict[str, np.ndarray]:
    """Random-policy transitions: s_t, a_t, r_t, s_{t+1} and the true sub-rewards."""
    rng = np.random.default_rng(seed)
    obs_buf = np.zeros((steps, env.n_features), np.float32)
    act = rng.integers(0, env.action_space.n, size=steps)
    rew = np.zeros(steps, np.float32)
    sub = np.zeros((steps, 2), np.float32)
    next_buf = np.zeros_like(obs_buf)
    obs, _ = env.reset(seed=seed)
    for i in range(steps):
        obs_buf[i] = obs
        obs, r, term, trunc, info = env.step(int(act[i]))
        rew[i], sub[i], next_buf[i] = r, info["sub_rewards"], obs
        if term or trunc:
            obs, _ = env.reset()
    return {"obs": obs_buf, "next_obs": next_buf, "action": act, "reward": rew, "sub_rewards": sub}
