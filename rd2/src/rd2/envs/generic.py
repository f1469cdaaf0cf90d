"""Any environment for ``rd2 decompose``: an Atari game (preprocessed, spec §7.1), a registered gymnasium id
(``CartPole-v1``, ``rd2/MonsterTreasure-v0``; ``toy`` is short for the latter) or a user's factory
``my_pkg.envs:make_env`` (called without arguments, it returns a ``gymnasium.Env``).

Every vector env made here returns observations shaped (N, stack, *frame_shape), the layout of
:class:`rd2.replay.ReplayBuffer`: Atari (N, 4, 84, 84) uint8; other image envs (N, 1, C, H, W) uint8 (channels
first); vector envs (N, 1, n) float32. ``model_shape`` is what the torso reads: (4, 84, 84), (C, H, W) or (n,), so
:func:`rd2.torso.make_torso` gives the Nature CNN for images and the MLP for vectors.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from neurips20_common import UserError

import rd2.envs  # noqa: F401  (registers rd2/MonsterTreasure-v0)
from rd2.envs.atari import AtariSpec, make_vector_env, resolve_env_id
from rd2.purity import REWARD_SOURCES

ALIASES = {"toy": "rd2/MonsterTreasure-v0"}


@dataclass
class EnvSpec:
    name: str  # what the user typed (resolved alias)
    kind: str  # "atari" or "gym"
    game: str  # short name for titles and REWARD_SOURCES: "Pong", "CartPole-v1", "MonsterTreasure"
    frame_shape: tuple[int, ...]  # one stored frame
    stack: int  # frames per observation
    frame_dtype: type
    n_actions: int
    atari: AtariSpec | None = None
    factory: Callable[[], gym.Env] | None = None

    @property
    def model_shape(self) -> tuple[int, ...]:
        if self.kind == "atari":
            return (self.stack, *self.frame_shape)
        return self.frame_shape

    @property
    def is_image(self) -> bool:
        return len(self.model_shape) == 3

    def reward_sources(self) -> dict[float, str] | None:
        return REWARD_SOURCES.get(self.game)

    def make_vector(self, num_envs: int, backend: str = "auto") -> gym.vector.VectorEnv:
        if self.kind == "atari":
            return make_vector_env(self.atari, num_envs, backend=backend)
        factory = self.factory
        vec = gym.vector.SyncVectorEnv([lambda: _checked(factory(), self.name) for _ in range(num_envs)],
                                       autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        return _StackAxis(vec, self.frame_shape, self.frame_dtype, image=len(self.frame_shape) == 3)


class _StackAxis:
    """A vector env whose observations get the replay layout (N, 1, *frame_shape) (images channels first)."""

    def __init__(self, env: gym.vector.VectorEnv, frame_shape: tuple[int, ...], dtype: type, image: bool) -> None:
        self.env, self.frame_shape, self.dtype, self.image = env, frame_shape, dtype, image
        self.num_envs = env.num_envs
        self.single_action_space = env.single_action_space

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if self.image:
            obs = np.moveaxis(obs, -1, 1)  # (N, H, W, C) -> (N, C, H, W)
        return obs.reshape(self.num_envs, 1, *self.frame_shape).astype(self.dtype, copy=False)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, actions):
        obs, reward, term, trunc, info = self.env.step(actions)
        return self._obs(obs), np.asarray(reward, np.float32), term, trunc, info

    def close(self) -> None:
        self.env.close()


def _checked(env: object, name: str) -> gym.Env:
    if not isinstance(env, gym.Env):
        raise UserError(f"--env {name}: the factory returned {type(env).__name__}, not a gymnasium.Env")
    return env


def _factory(name: str) -> Callable[[], gym.Env]:
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"--env {name}: cannot import {attr!r} from module {module!r} ({exc}); give "
                        "an importable module:function that returns a gymnasium.Env") from None
    if not callable(fn):
        raise UserError(f"--env {name}: {module}.{attr} is not callable")
    return fn


def resolve_env(name: str) -> EnvSpec:
    """What ``--env`` names: an Atari game, a gymnasium id, or ``module:factory`` (see the module docstring)."""
    name = ALIASES.get(name.strip(), name.strip())
    entry = gym.registry.get(name)
    is_ale = entry is not None and "ale_py" in str(entry.entry_point)
    if ":" in name and entry is None:
        factory = _factory(name)
        game = name.rsplit(":", 1)[1]
    elif entry is not None and not is_ale:
        def factory() -> gym.Env:
            return gym.make(name)
        game = name.split("/")[-1].split("-v")[0] if name.startswith("rd2/") else name
    else:
        try:
            atari = resolve_env_id(name)
        except UserError:
            raise UserError(f"--env {name}: not an Atari game, a registered gymnasium id (e.g. CartPole-v1, "
                            "rd2/MonsterTreasure-v0, toy) or an importable module:function") from None
        return EnvSpec(name, "atari", atari.game, (84, 84), 4, np.uint8, _atari_actions(atari), atari=atari)
    probe = _checked(factory(), name)
    try:
        space, act = probe.observation_space, probe.action_space
    finally:
        probe.close()
    if not isinstance(act, gym.spaces.Discrete):
        raise UserError(f"--env {name}: the action space is {act}; rd2 decompose needs a Discrete one")
    if not isinstance(space, gym.spaces.Box):
        raise UserError(f"--env {name}: the observation space is {space}; rd2 decompose needs a Box (a vector or "
                        "an image)")
    shape = tuple(int(d) for d in space.shape)
    if len(shape) == 3 and space.dtype == np.uint8:  # an image, (H, W, C)
        return EnvSpec(name, "gym", game, (shape[2], shape[0], shape[1]), 1, np.uint8, int(act.n), factory=factory)
    n = int(np.prod(shape))
    return EnvSpec(name, "gym", game, (n,), 1, np.float32, int(act.n), factory=factory)


def _atari_actions(atari: AtariSpec) -> int:
    env = make_vector_env(atari, 1, backend="gymnasium")
    try:
        return int(env.single_action_space.n)
    finally:
        env.close()
