"""Run directories: ``config.json`` + a resume-safe ``metrics.csv`` (+ TensorBoard when it is installed)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from neurips20_common.errors import UserError


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


class RunDir:
    """A folder for one run: ``config.json``, ``metrics.csv``, ``checkpoints/`` and whatever the run writes.

    ``RunDir.create("runs", "sdgar-gowalla")`` makes ``runs/sdgar-gowalla`` (adding ``-2``, ``-3`` ... when it
    exists, unless ``exist_ok``). ``RunDir.open(path)`` reopens an existing one for resume.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | os.PathLike, name: str | None = None, exist_ok: bool = False) -> RunDir:
        root = Path(root)
        name = name or time.strftime("%Y%m%d-%H%M%S")
        path = root / name
        if path.exists() and not exist_ok:
            i = 2
            while (root / f"{name}-{i}").exists():
                i += 1
            path = root / f"{name}-{i}"
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"run directory {path} does not exist; pass the folder a previous run wrote")
        return cls(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: Any, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` atomically, world-readable. Put the *resolved* device (``cpu``, ``cuda:0``) in
        ``extra`` (``{"device": str(device)}``), never ``auto``."""
        data = _jsonable(config)
        if extra:
            data = {**data, **_jsonable(extra)} if isinstance(data, dict) else {"config": data, **extra}
        return self.write_json("config.json", data)

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``<run dir>/<name>`` as JSON atomically (temp file + rename); e.g. ``summary.json``."""
        out = self.path / name
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return out

    def read_config(self) -> dict[str, Any]:
        path = self.path / "config.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path} is missing: {self.path} is not a run directory") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None

    def metrics(self, resume_step: int | None = None, step_key: str = "step",
                tensorboard: bool = False) -> MetricsLogger:
        return MetricsLogger(self.path / "metrics.csv", step_key=step_key, resume_step=resume_step,
                             tensorboard_dir=self.path / "tb" if tensorboard else None)


class MetricsLogger:
    """Append rows to a CSV that pandas reads. New columns widen the header (the file is rewritten).

    With ``resume_step=N`` the rows logged after step N (by a run that died after its last checkpoint) are
    dropped first, so that a resumed run does not leave duplicate rows.
    """

    def __init__(self, path: str | os.PathLike, step_key: str = "step", resume_step: int | None = None,
                 tensorboard_dir: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.step_key = step_key
        self.fields: list[str] = []
        rows: list[dict[str, str]] = []
        if self.path.exists():
            with self.path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or [])
                rows = list(reader)
            if resume_step is not None:
                kept = [r for r in rows if r.get(step_key, "") == "" or float(r[step_key]) <= resume_step]
                if len(kept) != len(rows):
                    self._rewrite(kept)
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(tensorboard_dir))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: r.get(k, "") for k in self.fields})
        os.replace(tmp, self.path)

    def log(self, row: dict[str, Any]) -> None:
        row = {k: _fmt(v) for k, v in row.items()}
        new = [k for k in row if k not in self.fields]
        if new:
            old_rows: list[dict[str, Any]] = []
            if self.path.exists():
                with self.path.open(newline="") as fh:
                    old_rows = list(csv.DictReader(fh))
            self.fields += new
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rewrite(old_rows)
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields).writerow({k: row.get(k, "") for k in self.fields})
        if self._tb is not None and self.step_key in row:
            step = int(float(row[self.step_key]))
            for k, v in row.items():
                if k != self.step_key and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _fmt(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    return v


class RunningMean:
    """Running means of named scalars between two reads (``update(loss=...)``, ``means()``, ``reset()``).

    Non-finite values are counted in ``nonfinite`` (not hidden): a key that saw one reports NaN in ``means()``.
    """

    def __init__(self) -> None:
        self._sum: dict[str, float] = {}
        self._n: dict[str, int] = {}
        self.nonfinite: dict[str, int] = {}

    def update(self, n: int = 1, **values: float) -> None:
        for k, v in values.items():
            v = float(v.item() if hasattr(v, "item") else v)
            self._n[k] = self._n.get(k, 0) + n
            if not math.isfinite(v):
                self.nonfinite[k] = self.nonfinite.get(k, 0) + 1
                self._sum.setdefault(k, 0.0)
                continue
            self._sum[k] = self._sum.get(k, 0.0) + v * n

    def means(self) -> dict[str, float]:
        return {k: (math.nan if self.nonfinite.get(k) else self._sum[k] / self._n[k])
                for k in self._sum if self._n[k]}

    def reset(self) -> None:
        self._sum.clear()
        self._n.clear()
        self.nonfinite.clear()
