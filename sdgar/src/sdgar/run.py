"""One training run, shared by ``sdgar train`` and the Python API (:mod:`sdgar.api`).

:func:`run_training` checks every count / size / fraction of the config, resolves the device (``config.json``
records ``cpu`` or ``cuda:0``, never ``auto``), applies the run-dir policy of common-utils (a run dir that holds
a run is refused unless ``--resume`` or ``--force``), writes the data artifact that makes the run dir
self-contained (``dataset.npz``: id maps and the train / valid / test matrices, so ``recommend`` and ``evaluate``
work after the source files moved), calls :func:`sdgar.train.train`, and writes ``summary.json`` with the final
and best metrics (also when training diverged).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from neurips20_common import NonFiniteError, RunDir, UserError, select_device
from neurips20_common.cli import (
    check_fraction,
    check_nonnegative,
    check_positive,
    prepare_run_dir,
    tensorboard_available,
)
from neurips20_common.errors import as_user_error

from sdgar import __version__
from sdgar.config import RunConfig
from sdgar.data.dataset import Dataset

ARTIFACT = "dataset.npz"
# int fields that may be 0 (everything else that counts or sizes must be ≥ 1)
ZERO_OK = {"patience", "pretrain_dns_epochs", "seed", "split_seed"}
# float fields that must be > 0 (the others must be finite and ≥ 0)
POSITIVE_FLOATS = {"learning_rate", "temperature", "lambda_x", "lambda_y", "lr_decay", "init_scale",
                   "adv_temperature", "clip_norm", "rank_lambda", "alpha"}


def versions() -> dict[str, str]:
    return {"sdgar": __version__, "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version()}


def validate(config: RunConfig) -> None:
    """Every count and size of the trainer and model configs is a positive integer, every rate finite and in
    range; a bad value is a UserError naming the ``--set`` key (``--epochs 0`` never trains "successfully")."""
    for section in ("train", "model"):
        cfg = getattr(config, section)
        hints = typing.get_type_hints(type(cfg))
        for f in dataclasses.fields(cfg):
            value, hint, key = getattr(cfg, f.name), hints.get(f.name), f"{section}.{f.name}"
            if value is None or isinstance(value, (bool, str)):
                continue
            if isinstance(value, int) and hint is not float:
                (check_nonnegative if f.name in ZERO_OK else check_positive)(key, value)
            elif isinstance(value, float):
                if not math.isfinite(value):
                    raise UserError(f"{key} must be finite, got {value!r}")
                (check_positive if f.name in POSITIVE_FLOATS else check_nonnegative)(key, value)
            elif isinstance(value, tuple):
                for v in value:
                    check_positive(key, v)
    if config.data.valid_frac:
        check_fraction("data.valid_frac", config.data.valid_frac)
    check_fraction("data.test_frac", config.data.test_frac)
    if hasattr(config.model, "lr_decay") and config.model.lr_decay > 1:
        raise UserError(f"model.lr_decay must be in (0, 1], got {config.model.lr_decay}")


def resolve_device(config: RunConfig) -> torch.device:
    """The device the run uses; ``config.train.device`` is set to its name (``cpu``, ``cuda:0``)."""
    device = select_device(config.train.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    config.train.device = str(device)
    return device


# ------------------------------------------------------------------------------------ the data artifact

def artifact(data: Dataset) -> dict[str, np.ndarray]:
    """Id maps and the split matrices as plain arrays (no pickles: ``np.load(allow_pickle=False)`` reads them)."""
    out: dict[str, np.ndarray] = {"name": np.array(data.name), "user_ids": data.user_ids.astype(str),
                                  "item_ids": data.item_ids.astype(str),
                                  "shape": np.array(data.train.shape, dtype=np.int64)}
    for part in ("train", "valid", "test"):
        m = getattr(data, part)
        if m is not None:
            out[f"{part}_indptr"] = m.indptr.astype(np.int64)
            out[f"{part}_indices"] = m.indices.astype(np.int32)
    return out


def dataset_from_artifact(arrays: Any) -> Dataset:
    shape = tuple(int(x) for x in arrays["shape"])

    def matrix(part: str) -> sp.csr_matrix | None:
        if f"{part}_indptr" not in arrays:
            return None
        indices = np.asarray(arrays[f"{part}_indices"])
        return sp.csr_matrix((np.ones(len(indices), np.float32), indices, np.asarray(arrays[f"{part}_indptr"])),
                             shape=shape)

    return Dataset(str(arrays["name"]), matrix("train"), matrix("test"), _ids(arrays["user_ids"]),
                   _ids(arrays["item_ids"]), matrix("valid"))


def _ids(a: np.ndarray) -> np.ndarray:
    """Original ids: back to integers when every one is an integer (they were written as strings)."""
    a = np.asarray(a).astype(str)
    try:
        ints = a.astype(np.int64)
    except ValueError:
        return a
    return ints if (ints.astype(str) == a).all() else a


def write_artifact(path: Path, data: Dataset) -> Path:
    """``np.savez_compressed`` to ``path`` atomically, mode 0644 (disk full / read-only: a UserError)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **artifact(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        user = as_user_error(exc, path)
        if user is not None:
            raise user from None
        raise
    return path


def read_artifact(run_dir: Path) -> Dataset | None:
    path = run_dir / ARTIFACT
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return dataset_from_artifact(arrays)
    except (ValueError, OSError, KeyError) as exc:
        raise UserError(f"{path} is corrupt ({type(exc).__name__}: {exc}); it is rewritten by `sdgar train`") from None


# ------------------------------------------------------------------------------------------------- the run

def check_run_dir(run_dir: str | os.PathLike, resume: bool = False, force: bool = False) -> None:
    """The run-dir policy's refusals, checked before the data are read (nothing is created here)."""
    path = Path(run_dir)
    if resume and not path.is_dir():
        prepare_run_dir(path, resume=True)  # raises: nothing to resume
    if not resume and not force and (path.is_file() or (path.is_dir() and any(path.iterdir()))):
        prepare_run_dir(path)  # raises: holds a run


def resume_config(run_dir: str | os.PathLike, epochs: int | None = None, device: str | None = None,
                  data_root: str | None = None) -> RunConfig:
    """The config of the run in ``run_dir``, with the few values a resume may change (more epochs, another device,
    the data moved)."""
    config = RunConfig.from_dict(prepare_run_dir(run_dir, resume=True).read_config())
    if epochs is not None:
        config.train.epochs = epochs
    if device is not None:
        config.train.device = device
    if data_root is not None:
        config.data.data_root = data_root
    return config


def run_training(config: RunConfig, data: Dataset, run_dir: str | os.PathLike, resume: bool = False,
                 force: bool = False, echo: Callable[[str], None] = print) -> Any:
    """Validate, resolve the device, prepare the run dir, train, write ``summary.json``; the trainer's result."""
    from sdgar.train import train

    validate(config)
    if config.train.tensorboard and not tensorboard_available():
        raise UserError("--tensorboard needs the tensorboard package (pip install tensorboard), or pass "
                        "--no-tensorboard")
    resolve_device(config)
    run = _Run(prepare_run_dir(run_dir, resume=resume, force=force).path, config.train.tensorboard)
    if not resume or not (run.path / ARTIFACT).is_file():
        write_artifact(run.path / ARTIFACT, data)
    summary: dict[str, Any] = {"status": "running", "model": config.train.model, "data": data.name,
                               "device": config.train.device, "versions": versions()}
    try:
        result = train(config, data, run, resume=resume, echo=echo)
    except NonFiniteError as exc:
        _write_summary(run, {**summary, "status": "diverged", "error": str(exc), **_best_so_far(run)})
        raise
    _write_summary(run, {**summary, "status": "done", "seconds": result.seconds, "best_epoch": result.best_epoch,
                         "best": result.best, "final": result.last,
                         "selected_on": "valid" if data.valid is not None else "test"})
    return result


class _Run(RunDir):
    """The run dir handed to the trainer: its metrics logger also writes TensorBoard events (``<run>/tb``, the same
    scalars as metrics.csv) when ``train.tensorboard`` is on."""

    def __init__(self, path: str | os.PathLike, tensorboard: bool) -> None:
        super().__init__(path)
        self.tensorboard = tensorboard

    def metrics(self, resume_step: int | None = None, step_key: str = "step",
                tensorboard: bool | None = None) -> Any:
        return super().metrics(resume_step, step_key, self.tensorboard if tensorboard is None else tensorboard)


def _best_so_far(run: RunDir) -> dict[str, Any]:
    best = run.checkpoints / "best.pt"
    if not best.is_file():
        return {"best": None}
    from neurips20_common import load_checkpoint

    state = load_checkpoint(best)
    return {"best_epoch": int(state["best"]["epoch"]), "best": state["best"]["metrics"], "best_checkpoint": str(best)}


def _write_summary(run: RunDir, summary: dict[str, Any]) -> None:
    try:
        run.write_json("summary.json", summary)
        os.chmod(run.file("summary.json"), 0o644)
    except OSError as exc:
        user = as_user_error(exc, run.file("summary.json"))
        if user is None:
            raise
        raise user from None
