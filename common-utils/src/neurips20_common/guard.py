"""Non-finite guard for training loops: stop at the first NaN/Inf with a message that says what to do."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from neurips20_common.errors import NonFiniteError


def is_finite(value: Any) -> bool:
    """True when a number, tensor, module (its parameters and buffers) or nested container holds no NaN/Inf."""
    if isinstance(value, torch.nn.Module):
        return all(is_finite(t) for t in value.state_dict().values())
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.is_complex()):
            return True
        return bool(torch.isfinite(value).all())
    if isinstance(value, Mapping):
        return all(is_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(is_finite(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # numpy arrays and scalars
        import numpy as np

        arr = np.asarray(value)
        return not np.issubdtype(arr.dtype, np.floating) or bool(np.isfinite(arr).all())
    return True


def first_nonfinite(named: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str | None:
    """Name of the first entry that is not finite, else None."""
    items = named.items() if isinstance(named, Mapping) else named
    for name, value in items:
        if not is_finite(value):
            return name
    return None


class FiniteGuard:
    """Check losses every call and parameters every ``every`` calls; raise :class:`NonFiniteError` on NaN/Inf.

    ``checkpoints`` (a :class:`CheckpointManager`) lets the message name the last finite checkpoint to resume
    from. ``what`` names the unit of ``step`` in messages ("step", "epoch", "update", "iteration").
    """

    def __init__(self, every: int = 1, checkpoints: Any = None, what: str = "step") -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.checkpoints = checkpoints
        self.what = what
        self._calls = 0

    def _fail(self, step: int, name: str) -> None:
        last = None
        if self.checkpoints is not None:
            last = self.checkpoints.latest()
        where = f"the last finite checkpoint is {last}" if last else "no finite checkpoint was written yet"
        raise NonFiniteError(f"{name} became NaN/Inf at {self.what} {step}; training stopped ({where}). "
                             "Lower the learning rate or the offending weight (see --set) and start again "
                             "or resume from that checkpoint")

    def check(self, step: int, **values: Any) -> None:
        """Check named losses/metrics (floats or tensors) now."""
        name = first_nonfinite(values)
        if name is not None:
            self._fail(step, name)

    def check_module(self, step: int, *modules: torch.nn.Module, force: bool = False) -> None:
        """Check every parameter and buffer of ``modules``, but only every ``every`` calls unless ``force``."""
        self._calls += 1
        if not force and (self._calls - 1) % self.every:
            return
        for module in modules:
            for name, tensor in module.state_dict().items():
                if not is_finite(tensor):
                    self._fail(step, f"parameter {name!r}")
