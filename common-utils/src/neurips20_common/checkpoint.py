"""Atomic, weights_only-safe checkpoints with keep-last rotation.

A checkpoint is one ``torch.save`` file holding only tensors, containers and plain python values
(model / optimizer / scheduler / EMA / grad-scaler state dicts, step counters, config as a dict, and the RNG
states from :func:`neurips20_common.seeding.capture_rng_state`), so it loads with ``weights_only=True``:
loading a checkpoint never runs arbitrary pickled code. A SHA-256 of every tensor is stored with it and checked
on load (a flipped byte is reported, not trained on); tensors holding NaN/Inf are refused at save time, so a
diverged run never rotates its last finite checkpoints out. Files are written 0644 (minus the umask).
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from neurips20_common.errors import NonFiniteError, UserError, as_user_error

FORMAT = "neurips20-checkpoint"
VERSION = 1
CHECKSUM_KEY = "sha256"
_SAFE_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, corrupt or not ours."""


def _plain(obj: Any) -> Any:
    """Subclasses of str/int/float (e.g. ``torch.__version__``, numpy scalars) as the plain builtin, which
    weights_only loading accepts; containers rebuilt only when something inside changed."""
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, _plain(v)) for k, v in obj.items()) if isinstance(obj, collections.OrderedDict) \
            else {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


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


def _tensors(obj: Any, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) pairs in a fixed order (dict insertion order, then list order)."""
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{where}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}/{i}")


def tensor_checksum(state: Any) -> str:
    """SHA-256 over every tensor's path, dtype, shape and bytes."""
    h = hashlib.sha256()
    for where, t in _tensors(state):
        t = t.detach().cpu().contiguous()
        h.update(f"{where}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _first_nonfinite(state: Any) -> str | None:
    for where, t in _tensors(state):
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            return where
    return None


def current_umask() -> int:
    """The process umask (read by setting and restoring it), for files that must be 0666 & ~umask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], allow_nonfinite: bool = False) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename), with a checksum.

    Raises :class:`NonFiniteError` (writing nothing) when a floating tensor holds NaN/Inf, unless
    ``allow_nonfinite``; a full disk or a read-only folder is a :class:`UserError` naming the path, and the temp
    file is removed.
    """
    path = Path(path)
    state = _plain(state)
    _check_safe(state, "state")
    if not allow_nonfinite:
        bad = _first_nonfinite(state)
        if bad is not None:
            raise NonFiniteError(f"refusing to write {path}: tensor {bad} holds NaN/Inf (training diverged); "
                                 "the previous checkpoints are kept")
    payload = {"format": FORMAT, "version": VERSION, **state}
    payload[CHECKSUM_KEY] = tensor_checksum(state)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        user = as_user_error(exc, path) if isinstance(exc, Exception) else None
        if user is not None and user is not exc:
            raise user from None
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu",
                    verify: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` and check its checksum.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated, corrupt, foreign, or holds
    pickled objects (refused as unsafe, never executed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (a run dir keeps them in "
                              "its checkpoints/ folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "GLOBAL" in text or "Unsupported global" in text:  # a pickled class/function: refuse, never run it
            raise CheckpointError(f"refused {path}: it holds pickled Python objects, which could run code when "
                                  "loaded; it was not loaded. Only plain-tensor checkpoints written by this "
                                  "project are accepted") from None
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read "
                              f"({type(exc).__name__}: {text.splitlines()[0] if text else ''}); "
                              "delete it and resume from an earlier checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this project (no '{FORMAT}' marker)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {state['version']} > {VERSION}); "
                              "upgrade the package")
    stored = state.pop(CHECKSUM_KEY, None)
    if verify and stored is not None:
        body = {k: v for k, v in state.items() if k not in ("format", "version")}
        if tensor_checksum(body) != stored:
            raise CheckpointError(f"checkpoint {path} is corrupt: its tensors do not match the stored SHA-256 "
                                  "(flipped or overwritten bytes); delete it and resume from an earlier checkpoint")
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
        """Write ``best.pt`` (when ``best``) first, then ``ckpt-<step>.pt``, then rotate.

        A kill between the two leaves a ``best.pt`` newer than the newest ``ckpt``, never a stale one: resume
        starts from the ckpt and rewrites best when it gets there. Non-finite state is refused before anything
        is written or rotated.
        """
        state = {**state, "step": step}
        if best:
            save_checkpoint(self.directory / "best.pt", state)
        path = save_checkpoint(self.path_for(step), state)
        for old in self.steps()[: -self.keep_last]:
            self.path_for(old).unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path_for(steps[-1]) if steps else None

    def require_latest(self, hint: str) -> Path:
        """The newest ``ckpt-N.pt`` for a resume, or a UserError ending with ``hint`` (what to do instead)."""
        latest = self.latest()
        if latest is None:
            raise UserError(f"{self.directory} holds no checkpoint to resume from; {hint}")
        return latest

    def best(self) -> Path | None:
        path = self.directory / "best.pt"
        return path if path.is_file() else None
