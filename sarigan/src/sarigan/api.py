"""The Python API (issue 16): train a run, load a generator from it, sample images as uint8 arrays, export weights.

```python
from sarigan import load_generator, train
run = train("shapes", preset="tiny", run_dir="runs/t")        # the same function `sarigan train` calls
G = load_generator(run)                                        # a run dir, a checkpoint file, or an export
images = G.generate(seeds=range(8), psi=0.7)                   # uint8 [8, H, W, 3], the same per seed
G.save_weights("g.safetensors")                                # weights-only export + g.json
```

The loaded generator is the ordinary :class:`sarigan.networks.Generator` (``G.mapping``, ``G.synthesis``,
``G.truncate``, style hooks, editing), with ``z_dim``, ``generate`` and ``save_weights`` added.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from neurips20_common import CheckpointManager, RunDir, UserError, load_checkpoint, select_device
from neurips20_common.cli import apply_set, prepare_run_dir, resolve_checkpoint, write_out

from sarigan import __version__
from sarigan.config import SariGANConfig, get_preset
from sarigan.data import load_data, to_uint8
from sarigan.networks import Generator
from sarigan.train import Trainer, z_from_seeds

# Fields that may change when a run is resumed (budgets and bookkeeping; everything else would change the model)
RESUME_SETTABLE = ("kimg", "max_minutes", "fd_every", "fd_samples", "sample_every", "ckpt_every", "log_every")
EXPORT_FORMAT = "sarigan-generator"


class PretrainedGenerator(Generator):
    """A trained generator with its provenance (``meta``) and a sampling method for users."""

    meta: dict[str, Any]

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def generate(self, seeds: Iterable[int] = range(8), psi: float = 1.0, cutoff: int | None = None,
                 noise_mode: str = "const", batch: int = 64) -> np.ndarray:
        """Images for ``seeds`` as uint8 [N, H, W, 3]. Image i depends only on seeds[i] (and ψ, noise mode):
        the latent comes from a generator seeded with it, and ``const`` noise is the model's fixed noise maps."""
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise UserError("generate: seeds is empty")
        if noise_mode not in ("const", "random"):
            raise UserError(f"noise_mode must be 'const' or 'random', got {noise_mode!r}")
        z = z_from_seeds(seeds, self.z_dim).to(self.device)
        out = [to_uint8(self(z[i: i + batch], psi=psi, cutoff=cutoff, noise_mode=noise_mode)).cpu()
               for i in range(0, len(seeds), batch)]
        return torch.cat(out).permute(0, 2, 3, 1).numpy()

    def save_weights(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Weights-only export: ``<path>`` (safetensors: the tensors, no code) and ``<path minus suffix>.json``
        (config, provenance, versions). :func:`load_generator` reads it back."""
        try:
            from safetensors.torch import save as st_save
        except ImportError:
            raise UserError("weights export needs the safetensors package: pip install safetensors") from None
        path = Path(path)
        if path.suffix != ".safetensors":
            raise UserError(f"{path}: name the export <name>.safetensors (the JSON is written beside it)")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"format": EXPORT_FORMAT, "sarigan_version": __version__, "torch_version": str(torch.__version__),
                "config": _cfg_dict(self.cfg), **{k: v for k, v in self.meta.items() if k != "config"}}
        side = path.with_suffix(".json")
        write_out(path, st_save(tensors, metadata={"format": EXPORT_FORMAT}))
        write_out(side, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path, side


def _cfg_dict(cfg: SariGANConfig) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg)


def _build(cfg_dict: dict[str, Any], weights: dict[str, torch.Tensor], where: Path, meta: dict[str, Any]
           ) -> PretrainedGenerator:
    G = PretrainedGenerator(SariGANConfig.from_dict(cfg_dict))
    try:
        G.load_state_dict(weights)
    except RuntimeError as exc:
        raise UserError(f"{where}: generator weights do not match its config ({str(exc).splitlines()[0]})") from None
    G.meta = meta
    return G


def load_generator(path: str | os.PathLike, device: torch.device | str = "cpu", ema: bool = True
                   ) -> PretrainedGenerator:
    """G_ema (or the training G with ``ema=False``) from a run dir, a checkpoint file, or a ``.safetensors``
    export (with its JSON beside it). In eval mode, without gradients, on ``device``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        G = _load_export(path)
    else:
        ckpt = resolve_checkpoint(path)
        state = load_checkpoint(ckpt)
        key = "G_ema" if ema and "G_ema" in state else "G"
        if "config" not in state or key not in state:
            raise UserError(f"{ckpt} is not a sarigan checkpoint (no config / generator weights)")
        meta = {"checkpoint": str(ckpt), "weights": key, "step": state.get("step"), "nimg": state.get("nimg"),
                "data": state.get("data"), "seed": state.get("seed"), "sarigan_version": state.get("sarigan_version")}
        G = _build(state["config"], state[key], ckpt, meta)
    return G.to(select_device(device) if isinstance(device, str) else device).eval().requires_grad_(False)


def _load_export(path: Path) -> PretrainedGenerator:
    side = path.with_suffix(".json")
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    if not side.is_file():
        raise UserError(f"{side} is missing: an export is <name>.safetensors plus <name>.json (its config)")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{side} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if meta.get("format") != EXPORT_FORMAT or "config" not in meta:
        raise UserError(f"{side} is not a sarigan generator export (no '{EXPORT_FORMAT}' format / config)")
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise UserError("reading a .safetensors export needs the safetensors package: pip install safetensors"
                        ) from None
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path} is truncated or corrupt ({exc}); export it again") from None
    return _build(meta["config"], weights, path, {**meta, "export": str(path)})


# ---------------------------------------------------------------------------------------------------------------
# Training: the function behind `sarigan train` (run-dir policy, resume, torchrun process groups)
# ---------------------------------------------------------------------------------------------------------------
def set_threads(spec: str | int, device: torch.device) -> None:
    """``auto``: on CPU, the cores not already busy (by the load average), at least 1; a shared CPU makes
    multi-threaded parallel regions stall (45× slower measured on 2 cores shared by ~10 jobs)."""
    if spec == "auto":
        if device.type != "cpu":
            return
        cores = os.cpu_count() or 1
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        torch.set_num_threads(max(1, min(cores, round(cores - busy))))
        return
    try:
        n = int(spec)
    except ValueError:
        raise UserError(f"--threads must be 'auto' or a positive integer, got {spec!r}") from None
    if n < 1:
        raise UserError(f"--threads must be 'auto' or a positive integer, got {spec!r}")
    torch.set_num_threads(n)


def init_distributed(device_spec: str) -> tuple[int, int, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_spec)
    if world == 1:
        return 0, 1, device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def finish_process(world: int) -> None:
    """After a clean multi-process run, skip interpreter teardown: with gloo a rank sometimes aborts in C++
    destructors after finishing ("terminate called without an active exception"), failing torchrun."""
    if world > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def train(data: str = "shapes", preset: str = "cpu16", run_dir: str | os.PathLike | None = None, *,
          resume: bool = False, force: bool = False, overrides: dict[str, Any] | None = None, seed: int = 0,
          device: str = "auto", threads: str | int = "auto", tensorboard: bool = False,
          log: Callable[[str], None] = print) -> tuple[Path, int]:
    """Train (or with ``resume`` continue exactly) a run; returns (run dir, process count).

    ``overrides``: config fields by name (``{"kimg": 40, "grouping": "none"}``), typed and checked. On resume the
    run's own config, data, preset and seed are used, and only :data:`RESUME_SETTABLE` fields may change.
    The run-dir policy is the shared one: a run dir that holds a run is refused unless ``resume`` or ``force``
    (which moves it aside to ``<dir>.old-<time>``).
    """
    overrides = dict(overrides or {})
    rank, world = 0, 1
    try:
        rank, world, dev = init_distributed(device)
        set_threads(threads, dev)
        path = Path(run_dir) if run_dir else Path("runs") / "sarigan" / f"{Path(data).name}-{preset}"
        state, latest = None, None
        if resume:
            run = prepare_run_dir(path, resume=True)
            saved = run.read_config()
            cfg = SariGANConfig.from_dict(saved["config"])
            bad = sorted(k for k in overrides if k not in RESUME_SETTABLE)
            if bad:
                raise UserError(f"{bad[0]}={overrides[bad[0]]!r}: on --resume only {', '.join(RESUME_SETTABLE)} "
                                "may change")
            cfg = apply_set(cfg, overrides)
            data, seed, preset = saved["data"], saved["seed"], saved.get("preset", preset)
            latest = CheckpointManager(run.checkpoints).require_latest("start it again with --force")
            state = load_checkpoint(latest, map_location=dev)
        else:
            cfg = apply_set(get_preset(preset), overrides)
        if cfg.batch % world:
            raise UserError(f"batch {cfg.batch} is not divisible by the {world} processes")
        images = load_data(data, cfg.resolution, seed=seed)  # before the run dir: bad data leaves nothing behind
        if not resume:
            run = prepare_run_dir(path, force=force) if rank == 0 else RunDir(path)
        if rank == 0:
            run.write_config({"config": cfg, "data": data, "seed": seed, "preset": preset, "world": world,
                              "device": str(dev), "sarigan_version": __version__})
            log(f"sarigan: {cfg.grouping} grouping, {cfg.resolution}², G={cfg.groups}, batch {cfg.batch} on "
                f"{world}× {dev} ({torch.get_num_threads()} threads), {len(images)} images from {images.name} "
                f"→ {run.path}")
        trainer = Trainer(cfg, images, dev, seed)
        if state is not None:
            trainer.load_state_dict(state)
            if rank == 0:
                log(f"resumed from {latest} at iteration {trainer.step} ({trainer.nimg / 1000:.1f} kimg)")
        extra = {"data": data, "preset": preset, "sarigan_version": __version__,
                 "torch_version": str(torch.__version__)}
        trainer.fit(cfg.kimg, run, extra=extra, log=log if rank == 0 else (lambda m: None),
                    tensorboard=tensorboard and rank == 0)
        if rank == 0:
            log(f"done: {trainer.step} iterations; samples in {run.file('samples')}")
        return run.path, world
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
