"""Seeding and RNG-state capture, so that a resumed run draws exactly the same numbers."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> dict[str, Any]:
    """Seed python, numpy (legacy global + a new Generator) and torch (CPU and every CUDA device).

    Returns the generators it made: ``{"numpy": np.random.Generator, "torch": torch.Generator}``.
    With ``deterministic=True`` torch is asked for deterministic algorithms (slower; errors on ops that
    have none) and cuDNN autotuning is switched off.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    gen = torch.Generator()
    gen.manual_seed(seed)
    return {"numpy": np.random.default_rng(seed), "torch": gen}


def _np_legacy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # Plain python types only, so that checkpoints load with weights_only=True.
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def capture_rng_state(generators: dict[str, Any] | None = None) -> dict[str, Any]:
    """All RNG states as tensors / plain python values (safe for ``torch.load(weights_only=True)``).

    ``generators`` may hold extra ``torch.Generator`` or ``np.random.Generator`` objects to capture by name.
    """
    state: dict[str, Any] = {
        "python": _py_state_to_plain(random.getstate()),
        "numpy": _np_legacy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    extra: dict[str, Any] = {}
    for key, gen in (generators or {}).items():
        if isinstance(gen, torch.Generator):
            extra[key] = {"kind": "torch", "state": gen.get_state()}
        elif isinstance(gen, np.random.Generator):
            extra[key] = {"kind": "numpy", "state": _to_plain(gen.bit_generator.state)}
        else:
            raise TypeError(f"cannot capture RNG state of {key!r}: {type(gen).__name__}")
    state["generators"] = extra
    return state


def restore_rng_state(state: dict[str, Any], generators: dict[str, Any] | None = None) -> None:
    """Inverse of :func:`capture_rng_state`; ``generators`` are restored in place."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for key, gen in (generators or {}).items():
        if key not in saved:
            raise KeyError(f"RNG state for generator {key!r} is not in the checkpoint")
        if isinstance(gen, torch.Generator):
            gen.set_state(saved[key]["state"])
        else:
            gen.bit_generator.state = saved[key]["state"]


def _py_state_to_plain(st: tuple) -> list:
    return [st[0], list(st[1]), st[2]]


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
