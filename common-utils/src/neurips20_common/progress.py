"""A tqdm progress bar with ETA and live metrics that stays silent when not on a TTY or under CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def interactive() -> bool:
    """True when stderr is a terminal and we are not under CI (``CI`` set) or asked to be quiet."""
    if os.environ.get("CI") or os.environ.get("NEURIPS20_QUIET"):
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool | None = None, **kwargs: Any) -> tqdm:
    """``tqdm`` with our defaults. Call ``bar.set_postfix(loss=...)`` for live metrics.

    ``disable=None`` means: show only on an interactive terminal.
    """
    if disable is None:
        disable = not interactive()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                smoothing=0.1, **kwargs)
