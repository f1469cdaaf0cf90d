"""Atari through gymnasium + ale-py (ROMs ship in the ale-py wheel, spec §8) with DQN preprocessing.

Every env id form (``Pong``, ``ALE/Pong-v5``, ``PongNoFrameskip-v4``) goes through one preprocessing stack
(Mnih et al. 2015): up to 30 no-op actions on reset, FIRE on reset when the game has it, frame skip 4 with a max-pool
over the last two frames, 84×84 grayscale, a stack of 4 frames (zero-padded at the episode start), no sticky
actions unless asked, no life-loss termination, and **raw** rewards (clipping is done by the learner, so the replay
can keep both, spec §6.3).

Two vector backends give the same observations (N, 4, 84, 84) uint8 and gymnasium's NEXT_STEP autoreset:
``ale`` — ale-py's native C++ ``AtariVectorEnv`` (ale-py ≥ 0.11), ``gymnasium`` — ``SyncVectorEnv`` over wrapped
single envs (the fallback when the native one is missing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
from neurips20_common import UserError
from PIL import Image

FRAME_SHAPE = (84, 84)
STACK = 4


def _ale():
    try:
        import ale_py
    except ImportError:  # pragma: no cover - ale-py is a declared dependency
        raise UserError("ale-py is not installed: pip install 'ale-py>=0.10' (its wheel ships the ROMs)") from None
    gym.register_envs(ale_py)  # gymnasium >= 1.0 no longer auto-registers the ALE namespace
    return ale_py


@cache
def _rom_names() -> dict[str, str]:
    """CamelCase game name (lower-cased) -> ale-py snake_case ROM id, e.g. 'upndown' -> 'up_n_down'."""
    from ale_py import roms

    _ale()
    return {"".join(p.capitalize() for p in rom.split("_")).lower(): rom for rom in roms.get_all_rom_ids()}


@dataclass(frozen=True)
class AtariSpec:
    """One game, whatever id form the user typed."""

    game: str  # CamelCase, e.g. "UpNDown"
    rom: str  # ale-py snake_case ROM id, e.g. "up_n_down"
    gym_id: str  # the registered gymnasium id used by the single-env path

    @property
    def v5_id(self) -> str:
        return f"ALE/{self.game}-v5"

    @property
    def v4_id(self) -> str:
        return f"{self.game}NoFrameskip-v4"


def resolve_env_id(name: str) -> AtariSpec:
    """Accept ``Pong``, ``pong``, ``ALE/Pong-v5`` or ``PongNoFrameskip-v4``."""
    raw = name.strip()
    base = raw
    if base.startswith("ALE/"):
        base = base[4:]
    for suffix in ("NoFrameskip-v4", "-v5", "-v4", "-v0"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    key = base.replace("_", "").lower()
    roms = _rom_names()
    if key not in roms:
        close = sorted(k for k in roms if k[:3] == key[:3])[:5]
        raise UserError(f"unknown Atari game {name!r}; expected e.g. Pong, ALE/Pong-v5 or PongNoFrameskip-v4"
                        + (f" (did you mean: {', '.join(close)}?)" if close else ""))
    rom = roms[key]
    game = "".join(p.capitalize() for p in rom.split("_"))
    gym_id = raw if raw in gym.registry else f"ALE/{game}-v5"
    if gym_id not in gym.registry:
        raise UserError(f"gymnasium has no env {gym_id!r}; ale-py {_ale().__version__} registers "
                        f"{game}NoFrameskip-v4 and ALE/{game}-v5")
    return AtariSpec(game=game, rom=rom, gym_id=gym_id)


@dataclass
class AtariConfig:
    """Preprocessing options (DQN defaults, spec §6.4 / §8)."""

    noop_max: int = 30
    frame_skip: int = 4
    repeat_action_probability: float = 0.0  # sticky actions; the v5 convention is 0.25 (Dopamine)
    max_episode_frames: int = 108_000
    fire_reset: bool = True
    episodic_life: bool = False


class DQNPreprocessing(gym.Wrapper):
    """No-op reset, frame skip with a max-pool over the last two frames, 84×84 grayscale (Mnih et al. 2015).

    Written here because gymnasium's ``AtariPreprocessing`` needs OpenCV. The resize is an area average (Pillow
    ``BOX``), like OpenCV's ``INTER_AREA``. Needs a base env made with ``obs_type="grayscale"`` and frameskip 1.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, frame_skip: int = 4, episodic_life: bool = False) -> None:
        super().__init__(env)
        self.noop_max, self.frame_skip, self.episodic_life = noop_max, frame_skip, episodic_life
        self.observation_space = gym.spaces.Box(0, 255, shape=FRAME_SHAPE, dtype=np.uint8)
        self._pool = np.zeros((2, *env.observation_space.shape[:2]), np.uint8)
        self._lives = 0

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        img = Image.fromarray(frame).resize(FRAME_SHAPE[::-1], Image.Resampling.BOX)
        return np.asarray(img, dtype=np.uint8)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            obs, _, term, trunc, info = self.env.step(0)
            if term or trunc:
                obs, info = self.env.reset(**kwargs)
        self._lives = self.env.unwrapped.ale.lives()
        return self._resize(obs), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        total, term, trunc, info = 0.0, False, False, {}
        for i in range(self.frame_skip):
            obs, r, term, trunc, info = self.env.step(action)
            total += float(r)
            if i >= self.frame_skip - 2:
                self._pool[i - (self.frame_skip - 2)] = obs
            if self.episodic_life:
                lives = self.env.unwrapped.ale.lives()
                term = term or lives < self._lives
                self._lives = lives
            if term or trunc:
                if i < self.frame_skip - 1:  # ended early: pool the last frame with itself
                    self._pool[:] = obs
                break
        return self._resize(self._pool.max(axis=0)), total, term, trunc, info


class FireReset(gym.Wrapper):
    """Press FIRE after reset (what ale-py's vector env does with ``use_fire_reset``); needed by e.g. Breakout."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.env.reset(**kwargs)
        obs, _, term, trunc, info = self.env.step(1)
        if term or trunc:
            obs, info = self.env.reset(**kwargs)
        return obs, info


def make_env(env: str | AtariSpec, seed: int | None = None, config: AtariConfig | None = None) -> gym.Env:
    """One preprocessed env: obs (4, 84, 84) uint8, raw rewards."""
    spec = env if isinstance(env, AtariSpec) else resolve_env_id(env)
    cfg = config or AtariConfig()
    _ale()
    base = gym.make(spec.gym_id, frameskip=1, obs_type="grayscale",
                    repeat_action_probability=cfg.repeat_action_probability,
                    max_num_frames_per_episode=cfg.max_episode_frames)
    out: gym.Env = DQNPreprocessing(base, noop_max=cfg.noop_max, frame_skip=cfg.frame_skip,
                                    episodic_life=cfg.episodic_life)
    if cfg.fire_reset and "FIRE" in base.unwrapped.get_action_meanings():
        out = FireReset(out)
    out = gym.wrappers.FrameStackObservation(out, STACK, padding_type="zero")
    if seed is not None:
        out.action_space.seed(seed)
    return out


def native_vector_available() -> bool:
    try:
        from ale_py.vector_env import AtariVectorEnv  # noqa: F401  (ale-py >= 0.11)
    except ImportError:
        return False
    return True


def make_vector_env(env: str | AtariSpec, num_envs: int, backend: str = "auto",
                    config: AtariConfig | None = None, num_threads: int | None = None) -> gym.vector.VectorEnv:
    """``num_envs`` preprocessed envs: obs (N, 4, 84, 84) uint8, raw rewards, NEXT_STEP autoreset.

    ``backend``: ``ale`` (native C++ threads), ``gymnasium`` (SyncVectorEnv) or ``auto`` (native when present).
    """
    spec = env if isinstance(env, AtariSpec) else resolve_env_id(env)
    cfg = config or AtariConfig()
    if backend == "auto":
        backend = "ale" if native_vector_available() else "gymnasium"
    if backend == "ale":
        if not native_vector_available():
            raise UserError(f"ale-py {_ale().__version__} has no native AtariVectorEnv (needs >= 0.11); "
                            "use --backend gymnasium or upgrade ale-py")
        from ale_py.vector_env import AtariVectorEnv

        threads = num_threads or min(num_envs, os.cpu_count() or 1)
        return AtariVectorEnv(game=spec.rom, num_envs=num_envs, num_threads=threads, frameskip=cfg.frame_skip,
                              grayscale=True, stack_num=STACK, img_height=FRAME_SHAPE[0], img_width=FRAME_SHAPE[1],
                              maxpool=True, noop_max=cfg.noop_max, use_fire_reset=cfg.fire_reset,
                              episodic_life=cfg.episodic_life, reward_clipping=False,
                              repeat_action_probability=cfg.repeat_action_probability,
                              max_num_frames_per_episode=cfg.max_episode_frames)
    if backend == "gymnasium":
        return gym.vector.SyncVectorEnv([lambda: make_env(spec, config=cfg) for _ in range(num_envs)])
    raise UserError(f"unknown vector backend {backend!r}: use auto, ale or gymnasium")
