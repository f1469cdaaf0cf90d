"""Device choice with a clear error when the asked device is not there; a scoped torch CPU thread count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from neurips20_common.errors import UserError


def select_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU. ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise UserError("device 'mps' was asked for but this torch build or machine has no MPS; "
                            "use --device cpu or --device auto")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device {spec!r} was asked for but CUDA is not available "
                            f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda}); "
                            "use --device cpu, or install a CUDA build of torch (make install TORCH_SPEC=...)")
        if ":" in spec:
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError:
                raise UserError(f"bad device {spec!r}: expected cuda:N with an integer N") from None
            count = torch.cuda.device_count()
            if not 0 <= index < count:
                raise UserError(f"device {spec!r} does not exist: this machine has {count} CUDA device(s)")
        return torch.device(spec)
    raise UserError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count is ``n`` inside the block and what it was after it (``None`` or 0: unchanged).
    For loops of tiny CPU ops, where a thread barrier per op costs more than the op on a busy machine."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
