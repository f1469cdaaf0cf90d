"""Command line interface: a thin click layer over the library."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from neurips20_common import RunDir, UserError

from sdgar import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdgar")
def main() -> None:
    """SD-GAR (NeurIPS 2020): sampling-decomposable GAN recommender, baselines, full-ranking evaluation."""


def _not_built(verb: str, issue: int) -> None:
    raise click.ClickException(f"'sdgar {verb}' is not built yet (tracked in issue #{issue}); nothing was run")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors the user can fix into one message and a non-zero exit."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise click.ClickException(f"{exc.filename}: {exc.strerror}") from None

    return wrapper


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--data-root", type=click.Path(file_okay=False), default=None,
                     help="Folder holding <NAME>/ dataset folders (else $SDGAR_DATA, then ~/.cache/sdgar)."),
        click.option("--format", "fmt", default="auto", show_default=True,
                     help="File format: auto, sdgar, lightgcn, snap-gowalla, ml10m, echonest, amazon-csv, "
                          "amazon-json, citeulike-dat, recbole, csv."),
        click.option("--synthetic-size", default=None, help="tiny | demo | citeulike | gowalla (--data synthetic)."),
        click.option("--valid-frac", type=float, default=None, help="Hold out this fraction of train for "
                     "validation and select the best checkpoint on it (default: official, select on test)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _data_overrides(data: str | None, data_root: str | None, fmt: str, synthetic_size: str | None,
                    valid_frac: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data is not None:
        out["data"] = data
    if data_root is not None:
        out["data_root"] = data_root
    if fmt != "auto":
        out["format"] = fmt
    if synthetic_size is not None:
        out["synthetic_size"] = synthetic_size
    if valid_frac is not None:
        out["valid_frac"] = valid_frac
    return out


@main.command()
@click.option("--data", default=None,
              help="gowalla | citeulike | synthetic | ... (see 'sdgar data list') or a PATH. Required unless --resume.")
@data_options
@click.option("--model", default="sdgar", show_default=True, help="sdgar, bpr, or another registered model.")
@click.option("--preset", default=None,
              help="citeulike | gowalla | best | demo (default: the dataset's own, if any).")
@click.option("--epochs", type=int, default=None, help="Number of epochs (official: 75).")
@click.option("--eval-every", type=int, default=None, help="Evaluate every N epochs (official: 5).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N  [default: auto]")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--seed", type=int, default=None, help="Seed of initialisation and sampling [default: 0].")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="Mixed precision of the training loss (CUDA only; fp16 adds a GradScaler) [default: fp32].")
@click.option("--patience", type=int, default=None,
              help="Stop after N evaluations without a better selection metric [default: 0 = off].")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any config value, e.g. --set model.use_importance=false --set train.cutoffs=10,20.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: runs/<model>-<data>].")
@click.option("--resume", "resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this folder exactly where its last checkpoint left off.")
@user_errors
def train(data: str | None, data_root: str | None, fmt: str, synthetic_size: str | None, valid_frac: float | None,
          model: str, preset: str | None, epochs: int | None, eval_every: int | None, device: str | None,
          threads: int | None, seed: int | None, precision: str | None, patience: int | None, sets: tuple[str, ...],
          run_dir: str | None, resume: str | None) -> None:
    """Train SD-GAR or a baseline; prints a metrics table at every evaluation."""
    from neurips20_common import select_device

    from sdgar.config import RunConfig, make_config, parse_set
    from sdgar.data import load_dataset
    from sdgar.train import check_precision
    from sdgar.train import train as run_training

    if resume is not None:
        run = RunDir.open(resume)
        config = RunConfig.from_dict(run.read_config())
        if epochs is not None:
            config.train.epochs = epochs
        if device is not None:
            config.train.device = device
        if data_root is not None:
            config.data.data_root = data_root
    else:
        if data is None:
            raise UserError("--data is required (a dataset name such as gowalla, 'synthetic', or a path)")
        extra = parse_set(sets)
        train_over = {k: v for k, v in {"epochs": epochs, "eval_every": eval_every, "device": device,
                                         "threads": threads, "seed": seed, "precision": precision,
                                         "patience": patience}.items() if v is not None}
        config = make_config(model, preset,
                             {**_data_overrides(data, data_root, fmt, synthetic_size, valid_frac), **extra["data"]},
                             {**train_over, **extra["train"]}, extra["model"])
        if isinstance(config.train.cutoffs, int):
            config.train.cutoffs = (config.train.cutoffs,)
    check_precision(config.train.precision, config.train.model, select_device(config.train.device))  # fail on a
    dataset = load_dataset(config.data)  # bad device, precision or --data before any folder is made
    if resume is None:
        name = f"{model}-{Path(data).name if os.sep in data else data}"
        if run_dir is None:
            run = RunDir.create("runs", name)
        else:
            path = Path(run_dir)
            taken = (path / "checkpoints").is_dir() and any((path / "checkpoints").iterdir())
            run = RunDir.create(path.parent, path.name, exist_ok=not taken)  # never overwrite: add -2, -3 ...
            if taken:
                click.echo(f"{path} already holds a run (continue it with --resume {path}); "
                           f"this run goes to {run.path}")
    else:
        run.write_config(config.to_dict())
    run_training(config, dataset, run, resume=resume is not None, echo=click.echo)


def _load(ckpt: str, device: str, data_root: str | None, data: str | None = None):
    from neurips20_common import select_device

    from sdgar.data import load_dataset
    from sdgar.train import load_trained

    dev = select_device(device)
    model, config, state = load_trained(ckpt, dev)
    if data_root is not None:
        config.data.data_root = data_root
    if data is not None:
        config.data.data = data
    dataset = load_dataset(config.data)
    if (dataset.n_users, dataset.n_items) != (state["n_users"], state["n_items"]):
        raise UserError(f"{ckpt} was trained on {state['n_users']} users × {state['n_items']} items but "
                        f"dataset {config.data.data} has {dataset.n_users} × {dataset.n_items}; pass the same data")
    return model, config, state, dataset, dev


@main.command()
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="A checkpoint file (best.pt, ...).")
@click.option("--data-root", default=None, help="Where the dataset lives if it moved since training.")
@click.option("--data", default=None, help="Use this dataset name/path instead of the one in the checkpoint.")
@click.option("--cutoffs", default=None, help="Comma-separated cutoffs [default: the run's, 3,5,10,20,50].")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@user_errors
def evaluate(ckpt: str, data_root: str | None, data: str | None, cutoffs: str | None, device: str,
             as_json: bool) -> None:
    """Full-ranking evaluation of a checkpoint (train items masked, all items ranked)."""
    from sdgar.evaluate import format_table
    from sdgar.train import evaluate_model

    model, config, state, dataset, dev = _load(ckpt, device, data_root, data)
    if cutoffs:
        try:
            config.train.cutoffs = tuple(int(k) for k in cutoffs.split(","))
        except ValueError:
            raise UserError(f"--cutoffs {cutoffs!r}: expected comma-separated integers such as 10,20,50") from None
    results = evaluate_model(model, dataset, config, dev, "test")
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(format_table(results, config.train.cutoffs,
                                title=f"{config.train.model} on {dataset.name}, epoch {state['epoch']} ({ckpt})"))


@main.command()
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="A checkpoint file (best.pt, ...).")
@click.option("--user", "user", default=None, help="Original id of the user.")
@click.option("--all", "all_users", is_flag=True, help="Recommend for every user (needs --out).")
@click.option("--k", "k", type=int, default=10, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="CSV: user,rank,item,score.")
@click.option("--include-train", is_flag=True, help="Do not filter out items the user already has.")
@click.option("--data-root", default=None)
@click.option("--device", default="auto", show_default=True)
@user_errors
def recommend(ckpt: str, user: str | None, all_users: bool, k: int, out: str | None, include_train: bool,
              data_root: str | None, device: str) -> None:
    """Top-k items for a user (or all users), in the dataset's original ids."""
    import numpy as np

    from sdgar.evaluate import top_k

    if (user is None) == (not all_users):
        raise UserError("give exactly one of --user ID or --all")
    if all_users and out is None:
        raise UserError("--all writes every user's list to a CSV: add --out recs.csv")
    if k < 1:
        raise UserError("--k must be at least 1")
    model, config, state, dataset, dev = _load(ckpt, device, data_root)
    users = np.arange(dataset.n_users) if all_users else np.array([dataset.user_index(user)])
    seen = None if include_train else dataset.train
    items, scores = top_k(model.scores, users, k, seen, dev)
    if out is None:
        click.echo(f"top {k} for user {user} ({config.train.model}, epoch {state['epoch']}):")
        click.echo(f"{'rank':>4s}  {'item':>12s}  score")
        for r, (i, s) in enumerate(zip(items[0], scores[0], strict=True), 1):
            if np.isfinite(s):
                click.echo(f"{r:4d}  {dataset.item_ids[i]!s:>12s}  {s:.4f}")
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user", "rank", "item", "score"])
        for row_u, row_i, row_s in zip(users, items, scores, strict=True):
            uid = dataset.user_ids[row_u]
            for r, (i, s) in enumerate(zip(row_i, row_s, strict=True), 1):
                if np.isfinite(s):
                    writer.writerow([uid, r, dataset.item_ids[i], f"{s:.6f}"])
    os.replace(tmp, path)
    click.echo(f"wrote top-{k} lists of {len(users)} users to {path}")


@main.group()
def data() -> None:
    """Dataset registry: info, download."""


@data.command("info")
@click.argument("name")
@data_options
@user_errors
def data_info(name: str, data_root: str | None, fmt: str, synthetic_size: str | None,
              valid_frac: float | None) -> None:
    """Users, items, interactions and density of a dataset (NAME, 'synthetic' or a PATH)."""
    from sdgar.data import DataConfig, load_dataset
    from sdgar.data.registry import KNOWN

    cfg = DataConfig(**_data_overrides(name, data_root, fmt, synthetic_size, valid_frac))
    if name in KNOWN:
        click.echo(KNOWN[name].description)
    info = load_dataset(cfg).info()
    for key, value in info.items():
        click.echo(f"{key:>22s}: {value:.6f}" if isinstance(value, float) else f"{key:>22s}: {value}")


@data.command("list")
def data_list() -> None:
    """Registered dataset names and where each is looked for."""
    from sdgar.data.registry import KNOWN, data_roots

    roots = ", ".join(str(r) for r in data_roots())
    click.echo(f"data roots (first match wins): --data-root, {roots}")
    click.echo(f"{'synthetic':>13s}  low-rank synthetic data (sizes tiny, demo, citeulike, gowalla); needs no files")
    for name, entry in KNOWN.items():
        click.echo(f"{name:>13s}  {entry.description}")


@data.command("download")
@click.argument("name")
@click.option("--data-root", default=None, help="Root to download into [default: first data root].")
@user_errors
def data_download(name: str, data_root: str | None) -> None:
    """Download a registered dataset (resumable, checksummed) into <root>/NAME/."""
    from sdgar.data.download import download, extract_member
    from sdgar.data.registry import KNOWN, data_roots

    if name not in KNOWN:
        raise UserError(f"unknown dataset {name!r}; downloadable: "
                        f"{', '.join(n for n, e in KNOWN.items() if e.files)}")
    entry = KNOWN[name]
    if not entry.files:
        raise UserError(f"{name} has no public direct download; put {entry.expected} into "
                        f"{data_roots(data_root)[0] / name}/ (get them from {entry.source})")
    folder = data_roots(data_root)[0] / name
    for remote in entry.files:
        if remote.extract:
            archive = download(remote.url, folder / Path(remote.url).name, remote.sha256)
            extract_member(archive, remote.extract, folder / remote.filename)
            archive.unlink()
        else:
            download(remote.url, folder / remote.filename, remote.sha256)
        click.echo(f"{folder / remote.filename}  ({'sha256 ok' if remote.sha256 else 'no published checksum'})")


@main.command()
@click.option("--data", required=True, help="gowalla | citeulike | synthetic | ... or a PATH.")
@data_options
@click.option("--models", default="sdgar,bpr,als", show_default=True,
              help="Comma-separated registered models: sdgar, bpr, als, irgan, dns, warp, aobpr, cml, sa.")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds 0..N-1 per model.")
@click.option("--preset", default=None, help="citeulike | gowalla | ... (default: the dataset's own, if any).")
@click.option("--epochs", default=None, help="N for every model, or MODEL=N,... [default: preset's; als 15].")
@click.option("--eval-every", type=int, default=None, help="Evaluate every N epochs (official: 5).")
@click.option("--target-ndcg", type=float, default=None,
              help="NDCG@50 for the time-to-quality column [default: 90%% of the best model's mean].")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N  [default: auto]")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--set", "sets", multiple=True, metavar="MODEL.KEY=VALUE|train.KEY=VALUE",
              help="Override a model's config (e.g. --set sdgar.dis_emb_dim=64) or the trainer's.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: runs/compare-<data>].")
@user_errors
def compare(data: str, data_root: str | None, fmt: str, synthetic_size: str | None, valid_frac: float | None,
            models: str, seeds: int, preset: str | None, epochs: str | None, eval_every: int | None,
            target_ndcg: float | None, device: str | None, threads: int | None, sets: tuple[str, ...],
            out: str | None) -> None:
    """Train several models × seeds and tabulate them (paper Table 2): CSV, markdown, NDCG@50-vs-time PNG."""
    from sdgar.compare import parse_epochs, run_compare
    from sdgar.config import _parse_value
    from sdgar.models.registry import get_model

    names = [m.strip() for m in models.split(",") if m.strip()]
    for name in names:
        get_model(name)
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    model_over: dict[str, dict] = {}
    train_over = {k: v for k, v in {"eval_every": eval_every, "device": device, "threads": threads}.items()
                  if v is not None}
    for item in sets:
        key, sep, raw = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or (section not in names and section != "train"):
            raise UserError(f"--set {item!r}: expected MODEL.KEY=VALUE (MODEL in {', '.join(names)}) or "
                            "train.KEY=VALUE")
        (train_over if section == "train" else model_over.setdefault(section, {}))[field] = _parse_value(raw)
    folder = Path(out) if out else Path("runs") / f"compare-{Path(data).name}"
    run_compare(_data_overrides(data, data_root, fmt, synthetic_size, valid_frac), names, list(range(seeds)),
                folder, preset, parse_epochs(epochs, names), train_over, model_over, target_ndcg, echo=click.echo)


@main.group()
def benchmark() -> None:
    """Timing benchmarks."""


@benchmark.command("scaling")
@click.option("--items", default="10000,20000,40000,80000,160000", show_default=True, help="#items to time.")
@click.option("--users", type=int, default=3000, show_default=True, help="#users at every size.")
@click.option("--density", type=float, default=0.002, show_default=True, help="Interactions / (users × items).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--parts", type=click.Choice(["both", "d", "g"]), default="both", show_default=True,
              help="Time D epochs, generator steps, or both.")
@click.option("--optimizer", type=click.Choice(["adam", "lazy_adam"]), default="adam", show_default=True,
              help="D optimizer of both models: dense Adam (official) or row-sparse lazy Adam.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/scaling", show_default=True)
@user_errors
def benchmark_scaling(items: str, users: int, density: float, seed: int, device: str, threads: int | None,
                      parts: str, optimizer: str, out: str) -> None:
    """SD-GAR vs IRGAN seconds per D epoch and per generator step as #items grows (synthetic data): CSV + PNG."""
    import torch

    from sdgar.compare import scaling_benchmark

    try:
        sizes = [int(x) for x in items.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--items {items!r}: expected comma-separated integers") from None
    if threads:
        torch.set_num_threads(threads)
    scaling_benchmark(sizes, users, density, seed, device, Path(out), echo=click.echo,
                      parts=("d", "g") if parts == "both" else (parts,), optimizer=optimizer)


if __name__ == "__main__":
    main()
