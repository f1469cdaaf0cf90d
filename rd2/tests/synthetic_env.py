"""A tiny image game for the decomposition tests: a coin (+1, top-left block) or a bomb (−2, bottom-right block)
shows in the next frame of the transition that pays it; the rest is low noise and an unrewarded distractor block.
``make_same_sign_env``: the bomb pays +5 instead (two sources of one sign, like Gopher's +20 / +100)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIZE = 52


class CoinBombEnv(gym.Env):
    def __init__(self, episode_len: int = 50, bomb: float = -2.0) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.episode_len = episode_len
        self.bomb = bomb

    def _frame(self, event: str) -> np.ndarray:
        img = self.np_random.integers(0, 30, (SIZE, SIZE, 1)).astype(np.uint8)
        if event == "coin":
            img[4:16, 4:16] = 250
        elif event == "bomb":
            img[SIZE - 16:SIZE - 4, SIZE - 16:SIZE - 4] = 250
        elif event == "distractor":
            img[20:32, 20:32] = 250
        return img

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(""), {}

    def step(self, action: int):
        self.t += 1
        u = self.np_random.random()
        event = "coin" if u < 0.15 else "bomb" if u < 0.3 else "distractor" if u < 0.45 else ""
        reward = {"coin": 1.0, "bomb": self.bomb}.get(event, 0.0)
        return self._frame(event), reward, False, self.t >= self.episode_len, {}


def make_env() -> gym.Env:
    return CoinBombEnv()


def make_same_sign_env() -> gym.Env:
    return CoinBombEnv(bomb=5.0)
