"""RD2: reward decomposition with representation disentanglement (NeurIPS 2020) on a toy game, Atari and any
gymnasium environment.

Python API (imported lazily, so ``rd2 --help`` stays fast)::

    from rd2 import RewardDecomposition, load_decomposition, run_decompose, make_config
    dec = load_decomposition("runs/decompose-Pong")   # a `rd2 decompose` run dir
    dec.sub_rewards(obs_batch)                         # (B, K) r̂_k, numpy in -> numpy out, torch in -> torch out
    agent = load_agent("runs/rd2-Pong-s0")             # a `rd2 train` run dir; agent.act(obs)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RewardDecomposition": "rd2.decomposition",
    "DecompositionConfig": "rd2.decomposition",
    "decomposition_loss": "rd2.decomposition",
    "Decomposition": "rd2.decompose",
    "load_decomposition": "rd2.decompose",
    "run_decompose": "rd2.decompose",
    "DecomposeConfig": "rd2.config",
    "make_config": "rd2.config",
    "channel_purity": "rd2.purity",
    "reward_purity": "rd2.purity",
    "make_torso": "rd2.torso",
    "resolve_env": "rd2.envs.generic",
    "load_agent": "rd2.evaluate",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rd2' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
