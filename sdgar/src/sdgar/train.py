"""One trainer for every model: epochs of ``model.train_epoch``, periodic full-ranking evaluation, run dir with
``config.json``, ``metrics.csv``, last + best checkpoints, and exact resume (model, optimizer, RNG, counters).
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

from sdgar.config import RunConfig
from sdgar.data.dataset import Dataset
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
    bar = progress(range(start_epoch + 1, tc.epochs + 1), total=tc.epochs, initial=start_epoch, desc="epoch",
                   unit="ep")
    for epoch in bar:
        model.train()
        t_epoch = time.perf_counter()
        stats = model.train_epoch(train_data, gen)
        row: dict[str, Any] = {"epoch": epoch, **stats, "epoch_seconds": time.perf_counter() - t_epoch}
        bar.set_postfix(loss=f"{stats.get('loss', float('nan')):.4f}")
        is_best = False
        if epoch % tc.eval_every == 0 or epoch == tc.epochs:
            t_eval = time.perf_counter()
            metrics = evaluate_model(model, data, config, device, select_split)
            if select_split == "valid":
                metrics = {f"valid_{k}": v for k, v in metrics.items()}
                metrics.update(evaluate_model(model, data, config, device, "test"))
            key = tc.select_metric if select_split == "test" else f"valid_{tc.select_metric}"
            if key not in metrics:
                raise UserError(f"select_metric {tc.select_metric!r} is not computed; cutoffs are {tc.cutoffs}")
            is_best = metrics[key] > best["value"]
            if is_best:
                best = {"epoch": epoch, "value": metrics[key], "metrics": metrics}
            row.update(metrics)
            row["eval_seconds"] = time.perf_counter() - t_eval
            last_metrics = metrics
            test_only = {k: v for k, v in metrics.items() if not k.startswith("valid_")}
            title = (f"epoch {epoch}/{tc.epochs}  loss {stats.get('loss', float('nan')):.4f}  "
                     f"({time.perf_counter() - t0:.0f}s)" + ("  * best" if is_best else ""))
            (echo if bar.disable else bar.write)(format_table(test_only, tc.cutoffs, title=title))
        ckpts.save(epoch, checkpoint_state(model, config, epoch, gen, best, data), best=is_best)
        metrics_log.log(row)
        if tc.patience and epoch - best["epoch"] >= tc.patience * tc.eval_every:
            echo(f"early stop at epoch {epoch}: no better {tc.select_metric} in {tc.patience} evaluations")
            break
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
