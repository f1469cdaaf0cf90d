"""CLI plumbing shared by the three packages: exit codes, ``--set KEY=VALUE``, run-dir policy, ``--ckpt``, ``--out``.

Conventions (see common-utils/CONVENTIONS.md):
- ``@click.group(cls=Group)``: UserError -> ``Error: ...`` and its exit code (2; 3 for NonFiniteError); a
  disk-full / permission / read-only OSError -> exit 2 naming the path; anything else is a bug: traceback, exit 1.
- ``--set a.b=1`` through :func:`parse_set` + :func:`apply_set` (dotted keys into nested dataclasses).
- A run dir that holds a run is never reused silently and never deleted: :func:`prepare_run_dir`.
- ``--ckpt`` takes a checkpoint file or a run dir: :func:`resolve_checkpoint`.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import stat
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from neurips20_common.checkpoint import current_umask
from neurips20_common.errors import UserError, as_user_error
from neurips20_common.runs import RunDir


class _CLIError(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Group(click.Group):
    """A click group that maps library errors to the shared exit codes (1 bug, 2 user error, 3 diverged)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            user = as_user_error(exc)
            if user is None:
                raise
            raise _CLIError(str(user), user.exit_code) from None


# --------------------------------------------------------------------------------------------- --set KEY=VALUE

def parse_value(text: str) -> Any:
    """``3`` -> int, ``1e-3`` -> float, ``true``/``false``/``none``, ``[1,2]`` -> list; anything else is a str."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def parse_set(pairs: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "lr=3e-4"]`` -> ``{"a.b": 1, "lr": 0.0003}``; a pair without ``=`` is a UserError."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set lr=1e-3")
        out[key.strip()] = parse_value(value)
    return out


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"--set {key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"--set {key}={value!r}: expected one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [parse_value(v) for v in str(value).split(",")] if isinstance(value, str) else [value]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"--set {key}={value!r}: expected a list such as 1,2,3")
        item = args[0] if args else Any
        items = [_coerce(v, item, key) for v in value] if item not in (Any, Ellipsis) else list(value)
        return tuple(items) if origin is tuple else items
    if hint is Any or hint is object:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"--set {key}={value!r}: expected true or false")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise UserError(f"--set {key}={value!r}: expected an integer")
        return int(value)
    if hint is float:
        if isinstance(value, str):  # inf, nan, 1e-3 written oddly: float() decides; the NaN guard handles inf
            try:
                return float(value)
            except ValueError:
                raise UserError(f"--set {key}={value!r}: expected a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"--set {key}={value!r}: expected a number")
        return float(value)
    if hint is str:
        return str(value)
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    try:
        return hint(value)
    except Exception:
        raise UserError(f"--set {key}={value!r}: not a valid {getattr(hint, '__name__', hint)}") from None


def apply_set(cfg: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    """A copy of dataclass ``cfg`` with dotted ``overrides`` applied, each value checked against the field's type.

    An unknown key is a UserError that lists the valid ones.
    """
    if not overrides:
        return cfg
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        full = prefix + key
        if head not in fields:
            raise UserError(f"--set {full}: unknown key; valid keys: {', '.join(prefix + k for k in fields)}")
        current = getattr(cfg, head)
        if dot:
            if not dataclasses.is_dataclass(current):
                raise UserError(f"--set {full}: {prefix + head} has no sub-keys")
            nested.setdefault(head, {})[rest] = value
        elif dataclasses.is_dataclass(current):
            raise UserError(f"--set {full}: {full} is a section; set one of its keys, e.g. {full}."
                            f"{dataclasses.fields(current)[0].name}=...")
        else:
            changes[head] = _coerce(value, hints.get(head, Any), full)
    for head, sub in nested.items():
        changes[head] = apply_set(getattr(cfg, head), sub, prefix=f"{prefix}{head}.")
    return dataclasses.replace(cfg, **changes)


# ------------------------------------------------------------------------------------------- value validation

def check_positive(name: str, value: float | int | None, allow_none: bool = False) -> None:
    """A count or size must be > 0 (``--epochs 0`` is a user error, not an untrained "success")."""
    if value is None and allow_none:
        return
    if value is None or isinstance(value, bool) or not value > 0:
        raise UserError(f"{name} must be a positive number, got {value!r}")


def check_nonnegative(name: str, value: float | int | None) -> None:
    if value is None or isinstance(value, bool) or not value >= 0:
        raise UserError(f"{name} must be >= 0, got {value!r}")


def check_fraction(name: str, value: float | None, low_open: bool = True, high_open: bool = True) -> None:
    """A fraction in (0, 1) by default; pass ``low_open=False`` / ``high_open=False`` to admit 0 / 1."""
    ok = value is not None and not isinstance(value, bool)
    if ok:
        ok = (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise UserError(f"{name} must be a fraction in {lo}0, 1{hi}, got {value!r}")


def positive_int_fields(cfg: Any, names: Iterable[str], prefix: str = "") -> None:
    """:func:`check_positive` for several fields of a dataclass."""
    for name in names:
        check_positive(prefix + name, getattr(cfg, name))


# --------------------------------------------------------------------------------------------- run dir policy

def prepare_run_dir(path: str | os.PathLike, *, resume: bool = False, force: bool = False) -> RunDir:
    """The run-dir policy of all three CLIs.

    - a new or empty folder is used;
    - ``resume=True`` reopens an existing run (it must exist);
    - an existing non-empty folder is refused unless ``force=True``, which moves it aside to
      ``<dir>.old-<timestamp>`` (a finished run is never deleted).
    """
    path = Path(path)
    if resume:
        if not path.is_dir():
            raise UserError(f"--resume: run directory {path} does not exist; start a new run without --resume")
        return RunDir(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--run-dir {path} is a file, not a folder; choose another path")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise UserError(f"run directory {path} already holds a run; pass --resume to continue it, --force to "
                            "move it aside (it is kept as <dir>.old-<time>), or choose another --run-dir")
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        i = 2
        while aside.exists():
            aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{i}")
            i += 1
        path.rename(aside)
        click.echo(f"moved the previous run in {path} to {aside}", err=True)
    path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def resolve_checkpoint(path: str | os.PathLike, prefer: str = "best") -> Path:
    """``--ckpt``: a checkpoint file, or a run dir (its ``checkpoints/best.pt``, else its newest ``ckpt-N.pt``).

    ``prefer="latest"`` picks the newest ``ckpt-N.pt`` before ``best.pt`` (what resume wants).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"--ckpt {path} does not exist; pass a checkpoint file or the run dir that holds it")
    for folder in (path / "checkpoints", path):
        if not folder.is_dir():
            continue
        best = folder / "best.pt"
        ckpts = sorted(folder.glob("ckpt-*.pt"))
        order = [best, *reversed(ckpts)] if prefer == "best" else [*reversed(ckpts), best]
        for candidate in order:
            if candidate.is_file():
                return candidate
    raise UserError(f"--ckpt {path}: no checkpoint (best.pt or ckpt-*.pt) in it or in its checkpoints/ folder")


# ----------------------------------------------------------------------------------------------------- --out

def write_out(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write a user-named output: atomically (temp + rename) for a regular or new file, through the link for a
    symlink (its target gets the data), and directly for anything else (``/dev/stdout``, a FIFO)."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    target = path.resolve() if path.is_symlink() else path
    try:
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):
            with open(target, "wb") as fh:  # device node, FIFO: write through, never replace
                fh.write(payload)
            return path
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode if mode is not None else 0o666 & ~current_umask())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        user = as_user_error(exc, path)
        if user is None:
            raise
        raise user from None
    return path


# ------------------------------------------------------------------------------------------- click decorators

def seed_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--seed`` (default 0, the same in every CLI)."""
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(fn)


def run_dir_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--run-dir``, ``--resume`` and ``--force`` with the policy of :func:`prepare_run_dir`."""
    fn = click.option("--force", is_flag=True, help="Start over in a --run-dir that holds a run: the old run is "
                      "moved aside to <dir>.old-<time>, never deleted.")(fn)
    fn = click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its newest checkpoint.")(fn)
    return fn


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def tensorboard_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--tensorboard/--no-tensorboard``: on when the tensorboard package is installed; logs metrics.csv's scalars
    to ``<run-dir>/tb``."""
    return click.option("--tensorboard/--no-tensorboard", default=tensorboard_available(),
                        help="Also log the metrics.csv scalars to <run-dir>/tb (default: on when tensorboard is "
                        "installed).")(fn)
