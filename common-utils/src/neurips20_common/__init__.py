"""Shared, paper-agnostic helpers for the rd2, sdgar and sarigan packages."""

from neurips20_common.checkpoint import CheckpointError, CheckpointManager, load_checkpoint, save_checkpoint
from neurips20_common.device import select_device, torch_threads
from neurips20_common.errors import NonFiniteError, UserError
from neurips20_common.guard import FiniteGuard, is_finite
from neurips20_common.progress import progress
from neurips20_common.runs import MetricsLogger, RunDir, RunningMean
from neurips20_common.seeding import capture_rng_state, restore_rng_state, seed_everything

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "FiniteGuard",
    "MetricsLogger",
    "NonFiniteError",
    "RunDir",
    "RunningMean",
    "UserError",
    "capture_rng_state",
    "is_finite",
    "load_checkpoint",
    "progress",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "torch_threads",
]
