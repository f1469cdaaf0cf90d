"""SD-GAR (NeurIPS 2020): sampling-decomposable GAN recommender, baselines, full-ranking evaluation.

The Python API (:mod:`sdgar.api`), in the shape of ``implicit``::

    from sdgar import SDGAR
    model = SDGAR(factors=128, negatives=50).fit(user_items)
    ids, scores = model.recommend(0, user_items[0], N=10)

Names are imported on first use, so ``import sdgar`` (and the CLI's start) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["ALS", "AOBPR", "BPR", "CML", "DNS", "IRGAN", "SA", "SDGAR", "WARP", "Model", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("sdgar.api"), name)
    raise AttributeError(f"module 'sdgar' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
