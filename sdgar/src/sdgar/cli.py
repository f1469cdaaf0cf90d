"""Command line interface: a thin click layer over the library (parse, build a config, call one function).

Conventions of common-utils/CONVENTIONS.md: exit 2 for a user error (one line), 3 when training diverged, 1 for a
bug; ``--set SECTION.KEY=VALUE`` through the shared parser; a run dir that holds a run is refused unless
``--resume`` or ``--force``; ``--ckpt`` takes a checkpoint file or a run dir; ``--seed`` defaults to 0.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from neurips20_common import UserError
from neurips20_common.cli import Group, run_dir_options, seed_option, tensorboard_option

from sdgar import __version__

POSITIVE = click.IntRange(min=1)
FRACTION = click.FloatRange(0.0, 1.0, min_open=False, max_open=True)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdgar")
def main() -> None:
    """SD-GAR (NeurIPS 2020): sampling-decomposable GAN recommender, baselines, full-ranking evaluation."""


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--data-root", type=click.Path(file_okay=False), default=None,
                     help="Folder holding <NAME>/ dataset folders (else $SDGAR_DATA, then ~/.cache/sdgar)."),
        click.option("--format", "fmt", default="auto", show_default=True,
                     help="File format: auto, sdgar, uir, lightgcn, snap-gowalla, ml10m, echonest, amazon-csv, "
                          "amazon-json, citeulike-dat, recbole, csv."),
        click.option("--synthetic-size", default=None, help="tiny | demo | citeulike | gowalla (--data synthetic)."),
        click.option("--valid-frac", type=FRACTION, default=None,
                     help="Hold out this fraction of train for validation and keep the checkpoint best on it "
                          "[default: 0.1 for a PATH (your own data); 0 = the official protocol for registered "
                          "datasets and synthetic data, which selects on test]."),
        click.option("--split", type=click.Choice(["random", "temporal", "leave_last"]), default=None,
                     help="How a raw file is split per user: random ⌈20%⌉ (spec §3.1), temporal (latest ⌈20%⌉ by "
                          "timestamp) or leave_last (latest item to test) [default: random]."),
        click.option("--test-frac", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
                     help="Test share of each user's items for a raw file [default: 0.2]."),
        click.option("--min-count", type=POSITIVE, default=None, help="k-core filter of a raw file."),
        click.option("--pos-threshold", type=float, default=None,
                     help="A rating ≥ this is a positive [default: 4 for rated formats (official), none for "
                          "uir, echonest and SNAP check-ins]."),
        click.option("--sep", default=None, help="Field separator of a --format csv file [default: ,]."),
        click.option("--user-col", default=None, help="User column of a --format csv file [default: user]."),
        click.option("--item-col", default=None, help="Item column of a --format csv file [default: item]."),
        click.option("--rating-col", default=None, help="Rating column of a --format csv file (optional)."),
        click.option("--timestamp-col", default=None, help="Timestamp column of a --format csv file (optional; "
                     "needed by --split temporal / leave_last)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


DATA_KEYS = {"data_root": "data_root", "fmt": "format", "synthetic_size": "synthetic_size",
             "valid_frac": "valid_frac", "split": "split", "test_frac": "test_frac", "min_count": "min_count",
             "pos_threshold": "pos_threshold", "sep": "csv_sep", "user_col": "user_col", "item_col": "item_col",
             "rating_col": "rating_col", "timestamp_col": "timestamp_col"}


def _data_overrides(data: str | None, **opts: Any) -> dict[str, Any]:
    """DataConfig overrides from the data options that were given."""
    out: dict[str, Any] = {} if data is None else {"data": data}
    for name, key in DATA_KEYS.items():
        value = opts.get(name)
        if value is not None and not (name == "fmt" and value == "auto"):
            out[key] = value
    return out


def _report(dataset: Any) -> None:
    for line in dataset.report:
        click.echo(line, err=True)


@main.command()
@click.option("--data", default=None,
              help="gowalla | citeulike | synthetic | ... (see 'sdgar data list') or a PATH. Required unless --resume.")
@data_options
@click.option("--model", default="sdgar", show_default=True, help="sdgar, bpr, or another registered model.")
@click.option("--preset", default=None,
              help="citeulike | gowalla | best | new-data | issue10 | demo (default: the dataset's own; SD-GAR "
                   "on a path: new-data).")
@click.option("--epochs", type=POSITIVE, default=None, help="Number of epochs (official: 75).")
@click.option("--eval-every", type=POSITIVE, default=None, help="Evaluate every N epochs (official: 5).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N  [default: auto]")
@click.option("--threads", type=POSITIVE, default=None, help="torch CPU threads.")
@seed_option
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="Mixed precision of the training loss (CUDA only; fp16 adds a GradScaler) [default: fp32].")
@click.option("--patience", type=click.IntRange(min=0), default=None,
              help="Stop after N evaluations without a better selection metric [default: 0 = off].")
@click.option("--engine", type=click.Choice(["torch", "fast"]), default=None,
              help="Training engine of sdgar/bpr/dns/sa: torch (faithful minibatches) or fast (numba Hogwild "
                   "per-positive steps on the CPU; changes the optimizer) [default: torch].")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any config value, e.g. --set model.use_importance=false --set train.cutoffs=10,20.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: runs/<model>-<data>]; one that holds a run needs --resume or --force.")
@run_dir_options
@tensorboard_option
def train(data: str | None, model: str, preset: str | None, epochs: int | None, eval_every: int | None,
          device: str | None, threads: int | None, seed: int, precision: str | None, patience: int | None,
          engine: str | None, sets: tuple[str, ...], run_dir: str | None, resume: bool, force: bool, tensorboard: bool,
          **data_opts: Any) -> None:
    """Train SD-GAR or a baseline; prints a metrics table at every evaluation, writes summary.json."""
    from sdgar.config import apply_overrides, make_config
    from sdgar.data import load_dataset
    from sdgar.models.registry import get_model
    from sdgar.run import check_run_dir, resume_config, run_training, validate

    if resume:
        if run_dir is None:
            raise UserError("--resume needs --run-dir DIR: the folder of the run to continue")
        if data is not None or sets:
            raise UserError("--resume continues a run with its own config.json; drop --data / --set (only "
                            "--epochs, --device and --data-root may change)")
        config = resume_config(run_dir, epochs=epochs, device=device, data_root=data_opts.get("data_root"))
    else:
        if data is None:
            raise UserError("--data is required (a dataset name such as gowalla, 'synthetic', or a path)")
        train_over = {k: v for k, v in {"epochs": epochs, "eval_every": eval_every, "device": device,
                                         "threads": threads, "seed": seed, "precision": precision,
                                         "patience": patience, "tensorboard": tensorboard}.items() if v is not None}
        if engine is not None and not hasattr(get_model(model)[1](), "engine"):
            raise UserError(f"--engine applies to sdgar, bpr, dns and sa; {model} has one training loop")
        config = make_config(model, preset, _data_overrides(data, **data_opts), train_over,
                             {"engine": engine} if engine else None)
        config = apply_overrides(config, sets)
        validate(config)
    if run_dir is None:
        run_dir = str(Path("runs") / f"{config.train.model}-{Path(config.data.data).name}")
    _check_device(config)  # a bad device, precision or run dir fails before the data are read or a folder is made
    check_run_dir(run_dir, resume, force)
    dataset = load_dataset(config.data)
    _report(dataset)
    run_training(config, dataset, run_dir, resume=resume, force=force, echo=click.echo)


def _check_device(config: Any) -> None:
    from neurips20_common import select_device

    from sdgar.train import check_precision

    check_precision(config.train.precision, config.train.model, select_device(config.train.device))


def _load(ckpt: str, device: str, data_root: str | None = None, data: str | None = None):
    """The API model of a checkpoint (file or run dir) and the dataset to evaluate it on."""
    import sdgar

    if data_root is not None or data is not None:  # evaluate on data other than the run's own copy
        from sdgar.data import load_dataset

        model = sdgar.load(ckpt, device)
        if data_root is not None:
            model.config.data.data_root = data_root
        if data is not None:
            model.config.data.data = data
        dataset = load_dataset(model.config.data)
        if (dataset.n_users, dataset.n_items) != (len(model.user_ids), len(model.item_ids)):
            raise UserError(f"{ckpt} was trained on {len(model.user_ids)} users × {len(model.item_ids)} items but "
                            f"dataset {model.config.data.data} has {dataset.n_users} × {dataset.n_items}; "
                            "pass the same data")
        return model, dataset
    model = sdgar.load(ckpt, device)
    return model, model.dataset


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file (best.pt, ...) or a run dir.")
@click.option("--data-root", default=None, help="Reload the dataset from here instead of the run's own copy.")
@click.option("--data", default=None, help="Evaluate on this dataset name/path instead of the run's own copy.")
@click.option("--cutoffs", default=None, help="Comma-separated cutoffs [default: the run's, 3,5,10,20,50].")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(ckpt: str, data_root: str | None, data: str | None, cutoffs: str | None, device: str,
             as_json: bool) -> None:
    """Full-ranking evaluation of a checkpoint (train items masked, all items ranked)."""
    import json

    from sdgar.evaluate import format_table
    from sdgar.train import evaluate_model

    model, dataset = _load(ckpt, device, data_root, data)
    config = model.config
    if cutoffs:
        try:
            config.train.cutoffs = tuple(int(k) for k in cutoffs.split(","))
        except ValueError:
            raise UserError(f"--cutoffs {cutoffs!r}: expected comma-separated integers such as 10,20,50") from None
        if min(config.train.cutoffs) < 1:
            raise UserError(f"--cutoffs {cutoffs!r}: every cutoff must be a positive integer")
    if dataset.test.nnz == 0:
        raise UserError(f"{ckpt}: its data ({dataset.name}) has no test split to evaluate on; pass --data")
    results = evaluate_model(model.model, dataset, config, model.device, "test")
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(format_table(results, config.train.cutoffs, title=f"{config.train.model} on {dataset.name} "
                                f"({ckpt})"))


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file (best.pt, ...) or a run dir.")
@click.option("--user", "user", default=None, help="Original id of the user.")
@click.option("--all", "all_users", is_flag=True, help="Recommend for every user (needs --out).")
@click.option("--k", "k", type=POSITIVE, default=10, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="CSV: user,rank,item,score.")
@click.option("--include-train", is_flag=True, help="Do not filter out items the user already has.")
@click.option("--device", default="auto", show_default=True)
def recommend(ckpt: str, user: str | None, all_users: bool, k: int, out: str | None, include_train: bool,
              device: str) -> None:
    """Top-k items for a user (or all users), in the dataset's original ids."""
    import csv

    import numpy as np
    from neurips20_common.cli import write_out

    import sdgar

    if (user is None) == (not all_users):
        raise UserError("give exactly one of --user ID or --all")
    if all_users and out is None:
        raise UserError("--all writes every user's list to a CSV: add --out recs.csv")
    model = sdgar.load(ckpt, device)
    if out is None:
        items, scores = model.recommend(user, N=k, filter_already_liked_items=not include_train)
        click.echo(f"top {k} for user {user} ({model.config.train.model}):")
        click.echo(f"{'rank':>4s}  {'item':>12s}  score")
        for r, (i, s) in enumerate(zip(items, scores, strict=True), 1):
            click.echo(f"{r:4d}  {i!s:>12s}  {s:.4f}")
        return
    users = np.asarray(model.user_ids) if all_users else np.asarray([user])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["user", "rank", "item", "score"])
    for start in range(0, len(users), 2048):
        batch = users[start:start + 2048]
        items, scores = model.recommend(batch, N=k, filter_already_liked_items=not include_train)
        for uid, row_i, row_s in zip(batch, items, scores, strict=True):
            for r, (i, s) in enumerate(zip(row_i, row_s, strict=True), 1):
                if np.isfinite(s):
                    writer.writerow([uid, r, i, f"{s:.6f}"])
    write_out(out, buf.getvalue())
    click.echo(f"wrote top-{k} lists of {len(users)} users to {out}")


@main.group()
def data() -> None:
    """Dataset registry: info, list, download."""


@data.command("info")
@click.argument("name")
@data_options
def data_info(name: str, **data_opts: Any) -> None:
    """Users, items, interactions and density of a dataset (NAME, 'synthetic' or a PATH), with what was detected
    and what each filter dropped."""
    from sdgar.data import DataConfig, load_dataset
    from sdgar.data.registry import KNOWN

    cfg = DataConfig(**_data_overrides(name, **data_opts))
    if name in KNOWN:
        click.echo(KNOWN[name].description)
    dataset = load_dataset(cfg)
    for line in dataset.report:
        click.echo(line)
    for key, value in dataset.info().items():
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
@click.option("--seeds", type=POSITIVE, default=3, show_default=True, help="Seeds 0..N-1 per model.")
@click.option("--preset", default=None, help="citeulike | gowalla | ... (default: the dataset's own, if any).")
@click.option("--epochs", default=None, help="N for every model, or MODEL=N,... [default: preset's; als 15].")
@click.option("--eval-every", type=POSITIVE, default=None, help="Evaluate every N epochs (official: 5).")
@click.option("--target-ndcg", type=float, default=None,
              help="NDCG@50 for the time-to-quality column [default: ALS's mean if ALS runs, else 90%% of "
                   "the best model's mean].")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N  [default: auto]")
@click.option("--threads", type=POSITIVE, default=None, help="torch CPU threads.")
@click.option("--set", "sets", multiple=True, metavar="MODEL.KEY=VALUE|train.KEY=VALUE",
              help="Override a model's config (e.g. --set sdgar.dis_emb_dim=64) or the trainer's.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: runs/compare-<data>].")
def compare(data: str, models: str, seeds: int, preset: str | None, epochs: str | None, eval_every: int | None,
            target_ndcg: float | None, device: str | None, threads: int | None, sets: tuple[str, ...],
            out: str | None, **data_opts: Any) -> None:
    """Train several models × seeds and tabulate them (paper Table 2): CSV, markdown, NDCG@50-vs-time PNG."""
    from neurips20_common.cli import parse_set

    from sdgar.compare import parse_epochs, run_compare
    from sdgar.models.registry import get_model

    names = [m.strip() for m in models.split(",") if m.strip()]
    for name in names:
        get_model(name)
    model_over: dict[str, dict] = {}
    train_over = {k: v for k, v in {"eval_every": eval_every, "device": device, "threads": threads}.items()
                  if v is not None}
    for key, value in parse_set(sets).items():
        section, dot, field = key.partition(".")
        if not dot or (section not in names and section != "train"):
            raise UserError(f"--set {key}: expected MODEL.KEY=VALUE (MODEL in {', '.join(names)}) or "
                            "train.KEY=VALUE")
        (train_over if section == "train" else model_over.setdefault(section, {}))[field] = value
    folder = Path(out) if out else Path("runs") / f"compare-{Path(data).name}"
    run_compare(_data_overrides(data, **data_opts), names, list(range(seeds)), folder, preset,
                parse_epochs(epochs, names, preset), train_over, model_over, target_ndcg, echo=click.echo)


@main.group()
def benchmark() -> None:
    """Timing benchmarks."""


@benchmark.command("scaling")
@click.option("--items", default="10000,20000,40000,80000,160000", show_default=True, help="#items to time.")
@click.option("--users", type=POSITIVE, default=3000, show_default=True, help="#users at every size.")
@click.option("--density", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.002, show_default=True,
              help="Interactions / (users × items).")
@seed_option
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--threads", type=POSITIVE, default=None, help="torch CPU threads.")
@click.option("--parts", type=click.Choice(["both", "d", "g"]), default="both", show_default=True,
              help="Time D epochs, generator steps, or both.")
@click.option("--optimizer", type=click.Choice(["adam", "lazy_adam"]), default="adam", show_default=True,
              help="D optimizer of both models: dense Adam (official) or row-sparse lazy Adam.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/scaling", show_default=True)
def benchmark_scaling(items: str, users: int, density: float, seed: int, device: str, threads: int | None,
                      parts: str, optimizer: str, out: str) -> None:
    """SD-GAR vs IRGAN seconds per D epoch and per generator step as #items grows (synthetic data): CSV + PNG."""
    import torch

    from sdgar.compare import scaling_benchmark

    try:
        sizes = [int(x) for x in items.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--items {items!r}: expected comma-separated integers") from None
    if not sizes or min(sizes) < 1:
        raise UserError(f"--items {items!r}: expected positive integers")
    if threads:
        torch.set_num_threads(threads)
    scaling_benchmark(sizes, users, density, seed, device, Path(out), echo=click.echo,
                      parts=("d", "g") if parts == "both" else (parts,), optimizer=optimizer)


if __name__ == "__main__":
    main()
