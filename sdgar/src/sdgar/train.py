"""One trainer for every model: epochs of ``model.train_epoch``, periodic full-ranking evaluation, run dir with
``config.json``, ``metrics.csv``, last + best checkpoints, and exact resume (model, optimizer, RNG, counters).

Public entry point (used by the CLI, ``sdgar.compare`` and the Python API)::

    train(config: RunConfig, data: Dataset, run: RunDir, resume: bool = False,
          echo: Callable[[str], None] = print) -> TrainResult

``TrainResult(run_dir, best, best_epoch, last, seconds)``. The sampled-negative models run on
:mod:`sdgar.engine` (``model.engine = "torch"`` faithful minibatches, or ``"fast"`` numba Hogwild kernels on the
CPU). The progress bar moves within an epoch (pairs/s, loss, ETA of the whole run); once the first part of the
first epoch has run, a line states how long the run will take at the measured rate. A non-finite loss or
parameter stops the run with :class:`~neurips20_common.errors.NonFiniteError` before that epoch is evaluated,
checkpointed or marked best.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from neurips20_common import (
    CheckpointManager,
    RunDir,
    UserError,
    capture_rng_state,
    load_checkpoint,
    progress,
    restore_rng_state,
    seed_everything,
    select_device,
)
from neurips20_common.guard import FiniteGuard

from sdgar.config import RunConfig
from sdgar.data.dataset import Dataset
from sdgar.engine import SampledNegativeEngine, check_engine
from sdgar.evaluate import evaluate, format_table
from sdgar.models.base import Recommender, TrainData
from sdgar.models.registry import build_model, get_model
from sdgar.precision import MixedPrecision


@dataclass
class TrainResult:
    run_dir: Path
    best: dict[str, float]
    best_epoch: int
    last: dict[str, float]
    seconds: float


def build(config: RunConfig, data: Dataset, device: torch.device) -> Recommender:
    torch.manual_seed(config.train.seed)
    model = build_model(config.train.model, data.n_users, data.n_items, config.model).to(device)
    if hasattr(model, "total_epochs"):
        model.total_epochs = config.train.epochs
    return model


def evaluate_model(model: Recommender, data: Dataset, config: RunConfig, device: torch.device,
                   split: str = "test") -> dict[str, float]:
    """Metrics on ``split`` ('test' or 'valid'); the training items (and validation items for test) are masked."""
    model.eval()
    if split == "valid":
        assert data.valid is not None
        target, seen = data.valid, data.train
    else:
        target, seen = data.test, data.train if data.valid is None else (data.train + data.valid).tocsr()
    return evaluate(model.scores, seen, target, config.train.cutoffs, device, config.train.eval_chunk)


def check_precision(mode: str, model: str, device: torch.device) -> MixedPrecision:
    """The run's :class:`MixedPrecision`; a clear error for bf16/fp16 off CUDA or on a model without autocast."""
    precision = MixedPrecision(mode, device)
    if precision.enabled and not get_model(model)[0].supports_amp:
        raise UserError(f"precision {mode} is wired for sdgar, bpr, dns and aobpr only; {model} trains in fp32")
    return precision


FAST_MODELS = ("sdgar", "bpr", "dns", "sa")


def _fmt_seconds(sec: float) -> str:
    if not math.isfinite(sec):
        return "?"
    sec = round(sec)
    return f"{sec // 3600}h{sec % 3600 // 60:02d}m" if sec >= 3600 else f"{sec // 60}m{sec % 60:02d}s"


class RunProgress:
    """The run's bar in epochs, advanced by the engine's within-epoch reports; pairs/s, loss and the ETA of the
    whole run (tqdm's, from the measured epoch rate). The first estimate is also written as a plain line."""

    def __init__(self, epochs: int, start_epoch: int, rows_per_epoch: int, echo: Callable[[str], None]) -> None:
        self.bar = progress(total=epochs, initial=start_epoch, desc="epoch", unit="ep",
                            bar_format="{l_bar}{bar}| {n:.2f}/{total_fmt} ep [{elapsed}<{remaining}{postfix}]")
        self.epochs, self.echo = epochs, echo
        self.rows_per_epoch = max(rows_per_epoch, 1)
        self.epoch_rows = 0
        self.t0 = time.perf_counter()
        self.t_epoch = self.t0
        self.announced = False
        self.setup_s = 0.0  # seconds of the current epoch before its first row (reported by a 0-row call)
        self.remaining_epochs = epochs - start_epoch

    def write(self, text: str) -> None:
        (self.echo if self.bar.disable else self.bar.write)(text)

    def start_epoch(self) -> None:
        self.epoch_rows, self.setup_s = 0, 0.0
        self.t_epoch = time.perf_counter()

    def report(self, rows: int, loss: float) -> None:
        if not rows:  # the epoch's set-up (draws, generator update, kernel compilation) is done: time the pass
            if not self.epoch_rows:
                now = time.perf_counter()
                self.setup_s, self.t_epoch = now - self.t_epoch, now
            return
        self.epoch_rows += rows
        frac = min(self.epoch_rows / self.rows_per_epoch, 0.999)
        self.bar.n = math.floor(self.bar.n) + frac
        dt = time.perf_counter() - self.t_epoch
        rate = self.epoch_rows / max(dt, 1e-9)
        self.bar.set_postfix_str(f"{rate:,.0f} pairs/s, loss {loss:.4f}", refresh=True)
        if not self.announced and (frac >= 0.05 or dt > 5.0):
            self.announced = True
            per_epoch = self.rows_per_epoch / max(rate, 1e-9)
            self.write(f"measured {rate:,.0f} pairs/s: {self.remaining_epochs} epochs of {self.rows_per_epoch:,} "
                       f"pairs take about {_fmt_seconds(per_epoch * self.remaining_epochs)} of training "
                       "(generator updates and evaluations come on top; updated after the first epoch)")

    def end_epoch(self, epoch: int, first: bool, loss: float) -> None:
        if self.epoch_rows:
            self.rows_per_epoch = self.epoch_rows
        self.bar.n = epoch
        self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=True)
        if first:
            took = time.perf_counter() - self.t_epoch
            left = self.epochs - epoch
            setup = (f" ({_fmt_seconds(self.setup_s)} of it before the pass: draws, generator update, compilation)"
                     if self.setup_s >= 1.0 else "")
            self.write(f"first epoch took {_fmt_seconds(self.setup_s + took)}{setup}: the remaining {left} passes "
                       f"take about {_fmt_seconds(took * left)} at this rate (plus generator updates and evaluations)")

    def close(self) -> None:
        self.bar.close()


def write_id_maps(run: RunDir, data: Dataset) -> None:
    np.savetxt(run.file("user_ids.txt"), data.user_ids.astype(str), fmt="%s")
    np.savetxt(run.file("item_ids.txt"), data.item_ids.astype(str), fmt="%s")


def checkpoint_state(model: Recommender, config: RunConfig, epoch: int, gen: torch.Generator,
                     best: dict[str, Any], data: Dataset) -> dict[str, Any]:
    return {"model_name": config.train.model, "model": model.state_dict(), "extra": model.extra_state_dict(),
            "rng": capture_rng_state({"train": gen}), "epoch": epoch, "best": best, "config": config.to_dict(),
            "n_users": data.n_users, "n_items": data.n_items, "precision": model.precision.state_dict()}


def train(config: RunConfig, data: Dataset, run: RunDir, resume: bool = False,
          echo: Callable[[str], None] = print) -> TrainResult:
    tc = config.train
    device = select_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed)
    precision = check_precision(tc.precision, tc.model, device)
    engine = getattr(config.model, "engine", "torch")
    check_engine(engine, tc.model, device, FAST_MODELS)
    if engine == "fast" or device.type == "cpu":
        from sdgar import kernels

        kernels.set_threads(tc.threads)
    model = build(config, data, device)
    model.precision = precision
    gen = torch.Generator(device=device)
    gen.manual_seed(tc.seed)
    ckpts = CheckpointManager(run.checkpoints, keep_last=1)
    start_epoch = 0
    best: dict[str, Any] = {"epoch": 0, "value": -math.inf, "metrics": {}}
    if resume:
        last = ckpts.latest()
        if last is None:
            raise UserError(f"{run.path} has no checkpoint to resume from ({run.checkpoints} is empty)")
        state = load_checkpoint(last, map_location=device)
        if state["n_users"] != data.n_users or state["n_items"] != data.n_items:
            raise UserError(f"{last} was trained on {state['n_users']} users × {state['n_items']} items, but the "
                            f"data now has {data.n_users} × {data.n_items}; resume with the same data")
        model.load_state_dict(state["model"])
        model.load_extra_state_dict(state["extra"])
        restore_rng_state(state["rng"], {"train": gen})
        precision.load_state_dict(state.get("precision", {"mode": "fp32"}))
        start_epoch, best = int(state["epoch"]), state["best"]
    else:
        run.write_config(config.to_dict())
        write_id_maps(run, data)
    metrics_log = run.metrics(resume_step=start_epoch if resume else None, step_key="epoch")
    train_data = TrainData(data.train)
    select_split = "valid" if data.valid is not None else "test"
    echo(f"{tc.model} on {data.name}: {data.n_users} users × {data.n_items} items, {data.train.nnz} train / "
         f"{data.test.nnz} test interactions; device {device}; run dir {run.path}")
    t0 = time.perf_counter()
    last_metrics: dict[str, float] = {}
    guard = FiniteGuard(checkpoints=ckpts, what="epoch")
    bar = RunProgress(tc.epochs, start_epoch, train_data.n_interactions, echo)
    if isinstance(model, SampledNegativeEngine):
        model.progress_cb = bar.report
    try:
        for epoch in range(start_epoch + 1, tc.epochs + 1):
            model.train()
            bar.start_epoch()
            t_epoch = time.perf_counter()
            stats = model.train_epoch(train_data, gen)
            row: dict[str, Any] = {"epoch": epoch, **stats, "epoch_seconds": time.perf_counter() - t_epoch}
            guard.check(epoch, **{k: v for k, v in stats.items() if isinstance(v, float)})
            guard.check_module(epoch, model, force=True)  # never evaluate, save or mark best a NaN model
            bar.end_epoch(epoch, epoch == start_epoch + 1, stats.get("loss", float("nan")))
            is_best = False
            if epoch % tc.eval_every == 0 or epoch == tc.epochs:
                t_eval = time.perf_counter()
                metrics = evaluate_model(model, data, config, device, select_split)
                if select_split == "valid":
                    metrics = {f"valid_{k}": v for k, v in metrics.items()}
                    if tc.eval_test:
                        metrics.update(evaluate_model(model, data, config, device, "test"))
                key = tc.select_metric if select_split == "test" else f"valid_{tc.select_metric}"
                if key not in metrics:
                    raise UserError(f"select_metric {tc.select_metric!r} is not computed; cutoffs are {tc.cutoffs}")
                is_best = math.isfinite(metrics[key]) and (tc.keep == "last" or metrics[key] > best["value"])
                if is_best:
                    best = {"epoch": epoch, "value": metrics[key], "metrics": metrics}
                row.update(metrics)
                row["eval_seconds"] = time.perf_counter() - t_eval
                last_metrics = metrics
                test_only = {k: v for k, v in metrics.items() if not k.startswith("valid_")}
                if not test_only:  # eval_test off: show the validation metrics
                    test_only = {k.removeprefix("valid_"): v for k, v in metrics.items()}
                which = "" if tc.eval_test or select_split == "test" else "  (validation)"
                title = (f"epoch {epoch}/{tc.epochs}  loss {stats.get('loss', float('nan')):.4f}  "
                         f"({time.perf_counter() - t0:.0f}s){which}" + ("  * best" if is_best else ""))
                bar.write(format_table(test_only, tc.cutoffs, title=title))
            metrics_log.log(row)  # the row before its checkpoint (MetricsLogger drops rows newer than a resume)
            ckpts.save(epoch, checkpoint_state(model, config, epoch, gen, best, data), best=is_best)
            if tc.patience and tc.keep == "best" and epoch - best["epoch"] >= tc.patience * tc.eval_every:
                echo(f"early stop at epoch {epoch}: no better {tc.select_metric} in {tc.patience} evaluations")
                break
    finally:
        bar.close()
        if isinstance(model, SampledNegativeEngine):
            model.progress_cb = None
    metrics_log.close()
    seconds = time.perf_counter() - t0
    echo(f"done in {seconds:.0f}s; best {tc.select_metric} {best['value']:.5f} at epoch {best['epoch']}; "
         f"checkpoints in {run.checkpoints}")
    return TrainResult(run.path, best.get("metrics", {}), int(best["epoch"]), last_metrics, seconds)


def load_trained(ckpt: str | Path, device: torch.device | str = "cpu") -> tuple[Recommender, RunConfig, dict]:
    """Model (eval mode, on ``device``) and its run config from a checkpoint file."""
    state = load_checkpoint(ckpt, map_location=device)
    if "config" not in state or "model_name" not in state:
        raise UserError(f"{ckpt} is not an sdgar training checkpoint (no config/model in it)")
    config = RunConfig.from_dict(state["config"])
    torch.manual_seed(0)
    model = build_model(config.train.model, state["n_users"], state["n_items"], config.model).to(device)
    model.load_state_dict(state["model"])
    model.load_extra_state_dict(state["extra"])
    model.eval()
    return model, config, state
