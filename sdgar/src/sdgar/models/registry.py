"""Model registry: ``--model NAME`` -> (Recommender class, its config dataclass).

Every entry names the module and the two classes, so importing the registry stays cheap and a broken model
file only breaks its own name. A model class is built as ``cls(n_users, n_items, config)`` (parameters
initialised from torch's global RNG, which the trainer seeds), then moved with ``.to(device)``; it trains
through :meth:`~sdgar.models.base.Recommender.train_epoch` and ranks through ``factors()`` / ``scores()``.

To add a model: one line in ``MODELS`` (``"name": ("sdgar.models.file", "ClassName", "ConfigName")``).
"""

from __future__ import annotations

import importlib
from typing import Any

from neurips20_common import UserError

from sdgar.models.base import Recommender

MODELS: dict[str, tuple[str, str, str]] = {
    "sdgar": ("sdgar.models.sdgar", "SDGAR", "SDGARConfig"),
    "bpr": ("sdgar.models.bpr", "BPR", "BPRConfig"),
    "als": ("sdgar.models.als", "WMF", "ALSConfig"),
    "irgan": ("sdgar.models.irgan", "IRGAN", "IRGANConfig"),
    "dns": ("sdgar.models.dns", "DNS", "DNSConfig"),
    "warp": ("sdgar.models.warp", "WARP", "WARPConfig"),
    "aobpr": ("sdgar.models.aobpr", "AOBPR", "AOBPRConfig"),
    "cml": ("sdgar.models.cml", "CML", "CMLConfig"),
    "sa": ("sdgar.models.sa", "SA", "SAConfig"),
}


def model_names() -> list[str]:
    return sorted(MODELS)


def get_model(name: str) -> tuple[type[Recommender], type]:
    """(model class, config dataclass) registered under ``name``."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    module, cls_name, cfg_name = MODELS[name]
    mod = importlib.import_module(module)
    return getattr(mod, cls_name), getattr(mod, cfg_name)


def build_model(name: str, n_users: int, n_items: int, config: Any) -> Recommender:
    cls, _ = get_model(name)
    return cls(n_users, n_items, config)
