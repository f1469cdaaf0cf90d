"""Atomic, weights_only-safe checkpoints with keep-last rotation.

A checkpoint is one ``torch.save`` file holding only tensors, containers and plain python values
(model / optimizer / scheduler / EMA / grad-scaler state dicts, step counters, config as a dict, and the RNG
states from :func:`neurips20_common.seeding.capture_rng_state`), so it loads with ``weights_only=True``:
loading a checkpoint never runs arbitrary pickled code.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from neurips20_common.errors import UserError

FORMAT = "neurips20-checkpoint"
VERSION = 1
_SAFE_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, corrupt or not ours."""


def _check_safe(obj: Any, where: str) -> None:
    if isinstance(obj, torch.Tensor) or isinstance(obj, _SAFE_SCALARS):
        return
    if isinstance(obj, (dict, collections.OrderedDict)):
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise TypeError(f"checkpoint key {where}[{k!r}] is a {type(k).__name__}; use str/int keys")
            _check_safe(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_safe(v, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint value {where} is a {type(obj).__name__}, which weights_only loading refuses; "
                    "store tensors, containers and plain python values only")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    _check_safe(state, "state")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated, corrupt or foreign.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (a run dir keeps them in "
                              "its checkpoints/ folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                              "delete it and resume from an earlier checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this project (no '{FORMAT}' marker)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {state['version']} > {VERSION}); "
                              "upgrade the package")
    return state


class CheckpointManager:
    """``ckpt-<step>.pt`` files in one folder, keeping the newest ``keep_last``; plus ``best.pt`` on demand."""

    _pattern = re.compile(r"^ckpt-(\d+)\.pt$")

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be >= 1")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (self._pattern.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:09d}.pt"

    def save(self, step: int, state: dict[str, Any], best: bool = False) -> Path:
        path = save_checkpoint(self.path_for(step), {**state, "step": step})
        if best:
            save_checkpoint(self.directory / "best.pt", {**state, "step": step})
        for old in self.steps()[: -self.keep_last]:
            self.path_for(old).unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path_for(steps[-1]) if steps else None

    def best(self) -> Path | None:
        path = self.directory / "best.pt"
        return path if path.is_file() else None
