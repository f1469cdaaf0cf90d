"""``sdgar compare``: train several models × seeds on one dataset, tabulate them like the paper's Table 2.

Every (model, seed) is an ordinary training run (same data, trainer and evaluator) in ``<out>/<model>-seed<s>/``.
The metrics of a run are those of its selected checkpoint (best NDCG@50 on test as in the official code, or on the
validation split with ``--valid-frac``). Outputs in ``<out>/``:

- ``runs.csv``: one row per run (model, seed, best epoch, training seconds, every metric);
- ``summary.csv`` and ``table.md``: mean ± std over seeds per model, plus training time and *time to quality*
  (training seconds, evaluations excluded, until a run first reaches the target NDCG@50: ALS's mean NDCG@50 when
  ALS is among the models, issue 17, else 90% of the best model's mean), also as a multiple of ALS's fit time;
- ``ndcg50_vs_time.png``: test NDCG@50 at each evaluation against cumulative training time, one line per run.

A finished run leaves ``result.json`` in its folder; running the same comparison again (or with more models or
seeds) reuses every finished run whose configuration is unchanged, and continues an interrupted one (same
configuration, a checkpoint) from its last epoch; a run of another configuration is moved aside and started over.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from neurips20_common import UserError

from sdgar.config import PRESETS, make_config
from sdgar.data import load_dataset
from sdgar.run import run_training

# Table 2 columns (spec §3.3: P and NDCG at 3, 5, 10, 50) plus Recall@20 / NDCG@20 for the LightGCN comparisons
TABLE_METRICS: tuple[str, ...] = ("P@3", "P@5", "P@10", "P@50", "Recall@20", "NDCG@3", "NDCG@5", "NDCG@10",
                                  "NDCG@20", "NDCG@50")
CURVE_METRIC = "NDCG@50"
DEFAULT_EPOCHS: dict[str, int] = {"als": 15}  # ALS converges in 15 sweeps (issue 10); others use the preset's


@dataclass
class CompareResult:
    runs: pd.DataFrame
    summary: pd.DataFrame
    target: float
    table: str


def parse_epochs(spec: str | None, models: Sequence[str], preset: str | None = None) -> dict[str, int]:
    """``"30"`` (every model) or ``"als=15,sdgar=75"`` (per model) -> {model: epochs}. A preset's own per-model
    epochs (``PRESETS[name]["epochs"]``) win over :data:`DEFAULT_EPOCHS`."""
    own = PRESETS.get(preset or "", {}).get("epochs", {})
    out = {m: DEFAULT_EPOCHS[m] for m in models if m in DEFAULT_EPOCHS and m not in own}
    if not spec:
        return out
    if "=" not in spec:
        return dict.fromkeys(models, int(spec))
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name not in models or not value.strip().isdigit():
            raise UserError(f"--epochs {spec!r}: expected N or MODEL=N,... with MODEL among {', '.join(models)}")
        out[name] = int(value)
    return out


def curve(run_dir: Path) -> pd.DataFrame:
    """(cumulative training seconds, NDCG@50) at each evaluation of a finished run."""
    m = pd.read_csv(run_dir / "metrics.csv")
    m["train_seconds"] = m["epoch_seconds"].cumsum()
    return m.loc[m[CURVE_METRIC].notna(), ["epoch", "train_seconds", CURVE_METRIC]].reset_index(drop=True)


def time_to(c: pd.DataFrame, target: float) -> float:
    reached = c.loc[c[CURVE_METRIC] >= target, "train_seconds"]
    return float(reached.iloc[0]) if len(reached) else math.nan


def run_compare(data: dict[str, Any], models: Sequence[str], seeds: Sequence[int], out: Path,
                preset: str | None = None, epochs: dict[str, int] | None = None,
                train_overrides: dict[str, Any] | None = None,
                model_overrides: dict[str, dict[str, Any]] | None = None, target: float | None = None,
                echo: Callable[[str], None] = print) -> CompareResult:
    configs = {(m, s): make_config(m, preset, data, {**(train_overrides or {}), "seed": s,
                                                     **({"epochs": epochs[m]} if epochs and m in epochs else {})},
                                   (model_overrides or {}).get(m))
               for m in models for s in seeds}  # all configs first: a typo fails before any training
    dataset = load_dataset(next(iter(configs.values())).data)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for (model, seed), config in configs.items():
        folder = out / f"{model}-seed{seed}"
        done = folder / "result.json"
        config_json = json.loads(json.dumps(config.to_dict()))
        if done.is_file() and same_run(json.loads(done.read_text()).get("config") or {}, config_json):
            echo(f"\n=== {model}, seed {seed}: reusing the finished run in {folder} ===")
            row = json.loads(done.read_text())["row"]
        else:
            resume = unfinished(folder, config_json)
            echo(f"\n=== {model}, seed {seed}" + (": resuming its last checkpoint" if resume else "") + " ===")
            # a different earlier run is moved aside to <folder>.old-<time>, never deleted; an interrupted run of
            # the same config continues from its last epoch (exact resume), so a long run can span several calls
            result = run_training(config, dataset, folder, resume=resume, force=not resume, echo=echo)
            test_metrics = {k: v for k, v in result.best.items() if not k.startswith("valid_")}
            m = pd.read_csv(folder / "metrics.csv")  # every epoch, those before a resume too
            wall = float(m["epoch_seconds"].sum() + m.get("eval_seconds", 0).sum()) if resume else result.seconds
            row = {"model": model, "seed": seed, "best_epoch": result.best_epoch,
                   "train_seconds": float(curve(folder)["train_seconds"].iloc[-1]), "wall_seconds": wall,
                   **test_metrics}
            done.write_text(json.dumps({"config": config_json, "row": row}))
        curves[(model, seed)] = curve(folder)
        rows.append(row)
    runs = pd.DataFrame(rows)
    target, target_name = default_target(runs) if target is None else (target, "--target-ndcg")
    runs["time_to_target"] = [time_to(curves[(r.model, r.seed)], target) for r in runs.itertuples()]
    summary = summarize(runs)
    table = markdown_table(summary, target, dataset.name, len(seeds), target_name)
    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "table.md").write_text(table + "\n")
    plot_curves(curves, out / "ndcg50_vs_time.png", dataset.name, target)
    echo("\n" + table)
    echo(f"\nwrote {out / 'runs.csv'}, {out / 'summary.csv'}, {out / 'table.md'}, {out / 'ndcg50_vs_time.png'}")
    return CompareResult(runs, summary, target, table)


def unfinished(folder: Path, config_json: dict[str, Any]) -> bool:
    """``folder`` holds an interrupted run of this config (its config.json, a checkpoint, no result.json); the
    device is left out of the comparison, since the run dir records the resolved one (``auto`` -> ``cpu``)."""
    cfg = folder / "config.json"
    if (folder / "result.json").is_file() or not cfg.is_file() or not any((folder / "checkpoints").glob("ckpt-*.pt")):
        return False
    return same_run(json.loads(cfg.read_text()), config_json, ignore_device=True)


def same_run(a: dict[str, Any], b: dict[str, Any], ignore_device: bool = False) -> bool:
    """Two run configs (``RunConfig.to_dict`` as JSON) describe the same run. ``data.valid_frac`` None and 0.0 are
    the same (loading the data fills None in, on whichever config it was loaded with); ``ignore_device``: the run
    dir's config.json records the resolved device (``auto`` -> ``cpu``)."""
    def norm(c: dict[str, Any]) -> dict[str, Any]:
        data = {**c.get("data", {}), "valid_frac": c.get("data", {}).get("valid_frac") or 0.0}
        train = {k: v for k, v in c.get("train", {}).items() if not (ignore_device and k == "device")}
        return {**c, "data": data, "train": train}

    return norm(a) == norm(b)


def default_target(runs: pd.DataFrame) -> tuple[float, str]:
    """ALS's mean NDCG@50 when ALS ran (issue 17: time to ALS quality), else 90% of the best model's mean."""
    means = runs.groupby("model", sort=False)[CURVE_METRIC].mean()
    if "als" in means:
        return float(means["als"]), "ALS's mean"
    return 0.9 * float(means.max()), "90% of the best mean"


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in (*TABLE_METRICS, "train_seconds", "wall_seconds", "time_to_target") if c in runs]
    g = runs.groupby("model", sort=False)
    summary = g[cols].mean().add_suffix("_mean").join(g[cols].std(ddof=0).add_suffix("_std"))
    summary["seeds"] = g.size()
    summary["reached"] = g["time_to_target"].apply(lambda s: int(s.notna().sum()))
    summary = summary.reset_index()
    als = summary.loc[summary["model"] == "als", "train_seconds_mean"]
    # time to quality as a multiple of ALS's whole fit (issue 17 asks for ≤ 10×)
    summary["time_to_target_x_als"] = summary["time_to_target_mean"] / float(als.iloc[0]) if len(als) else math.nan
    return summary


def markdown_table(summary: pd.DataFrame, target: float, data_name: str, n_seeds: int,
                   target_name: str = "") -> str:
    metrics = [m for m in TABLE_METRICS if f"{m}_mean" in summary]
    source = f" ({target_name})" if target_name else ""
    head = (f"{data_name}: mean ± std over {n_seeds} seed(s); time to quality = training seconds (evaluations "
            f"excluded) until test NDCG@50 ≥ {target:.4f}{source}, mean over the seeds that reached it; × ALS = "
            "that time / ALS's fit time")
    lines = [head, "", "| model | " + " | ".join(metrics) + " | train s | wall s | time to quality | × ALS |",
             "|---|" + "---|" * (len(metrics) + 4)]
    for _, r in summary.iterrows():
        cells = [f"{r[m + '_mean']:.4f}" + (f" ± {r[m + '_std']:.4f}" if r["seeds"] > 1 else "") for m in metrics]
        ttq = f"{r['time_to_target_mean']:.1f} s ({r['reached']}/{r['seeds']})" if r["reached"] else "not reached"
        x_als = f"{r['time_to_target_x_als']:.1f}×" if math.isfinite(r["time_to_target_x_als"]) else "–"
        wall = f"{r['wall_seconds_mean']:.1f}" if "wall_seconds_mean" in r else "–"
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['train_seconds_mean']:.1f} | {wall} | {ttq} "
                     f"| {x_als} |")
    best = improvement(summary)
    if best:
        lines += ["", best]
    return "\n".join(lines)


def improvement(summary: pd.DataFrame) -> str:
    """SD-GAR's relative NDCG@50 gain over the best other model and over IRGAN (the paper's headline numbers)."""
    s = summary.set_index("model")[f"{CURVE_METRIC}_mean"]
    if "sdgar" not in s or len(s) < 2:
        return ""
    others = s.drop("sdgar")
    best = others.idxmax()
    parts = [f"SD-GAR vs best baseline ({best}): {100 * (s['sdgar'] / others[best] - 1):+.1f}% NDCG@50"]
    if "irgan" in others:
        parts.append(f"vs IRGAN: {100 * (s['sdgar'] / others['irgan'] - 1):+.1f}%")
    return "; ".join(parts)


def plot_curves(curves: dict[tuple[str, int], pd.DataFrame], path: Path, data_name: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors: dict[str, Any] = {}
    for (model, seed), c in curves.items():
        color = colors.setdefault(model, f"C{len(colors) % 10}")
        ax.plot(c["train_seconds"], c[CURVE_METRIC], marker=".", color=color, alpha=0.9 if seed == 0 else 0.4,
                label=model if model not in [lbl for lbl in ax.get_legend_handles_labels()[1]] else None)
    ax.axhline(target, color="grey", ls="--", lw=0.8, label=f"target {target:.4f}")
    spread = [c["train_seconds"] for c in curves.values() if len(c)]
    if spread and min(x.min() for x in spread) > 0 and max(x.max() for x in spread) > 20 * min(x.min() for x in spread):
        ax.set_xscale("log")  # models differ by orders of magnitude in speed
    ax.set_xlabel("training time (s, evaluation excluded)")
    ax.set_ylabel(f"test {CURVE_METRIC}")
    ax.set_title(f"{data_name}: {CURVE_METRIC} vs training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- time comparison: the paper's time-vs-#items figure (SD-GAR vs IRGAN), spec §1.7 and §6 G4

SCALING_ITEMS: tuple[int, ...] = (10_000, 20_000, 40_000, 80_000, 160_000)


def _timed(fn: Callable[[], Any], device: Any) -> float:
    import time

    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def scaling_data(n_items: int, users: int, density: float, seed: int) -> Any:
    """Synthetic training pairs (the core low-rank generator, ⌈20%⌉ held out) with exactly ``n_items`` items."""
    from sdgar.data.dataset import csr
    from sdgar.data.split import per_user_split
    from sdgar.data.synthetic import SyntheticSpec, generate
    from sdgar.models.base import TrainData

    spec = SyntheticSpec(n_users=users, n_items=n_items, n_interactions=round(users * n_items * density), seed=seed)
    df = generate(spec)  # ids kept as generated, so the catalogue has exactly n_items items (some never seen)
    u, i = df["user"].to_numpy(), df["item"].to_numpy()
    held = per_user_split(u, 0.2, np.random.default_rng(seed))
    return TrainData(csr(u[~held], i[~held], (users, n_items)))


def scaling_row(n_items: int, users: int, density: float, seed: int, device: Any,
                parts: Sequence[str] = ("d", "g"), optimizer: str = "adam") -> dict[str, Any]:
    """One size of :func:`scaling_benchmark`: build the data and models, time one epoch of each part."""
    import torch

    from sdgar.models.irgan import IRGAN, IRGANConfig
    from sdgar.models.sdgar import SDGAR, SDGARConfig

    train_data = scaling_data(n_items, users, density, seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    torch.manual_seed(seed)
    sd = SDGAR(users, n_items, SDGARConfig(optimizer=optimizer)).to(device)
    row: dict[str, Any] = {"items": n_items, "users": users, "train_interactions": train_data.n_interactions,
                           "optimizer": optimizer}
    ir = IRGAN(users, n_items, IRGANConfig(optimizer=optimizer)).to(device)
    nan = float("nan")
    if "g" in parts:
        row["sdgar_g_update_s"] = _timed(lambda: sd.generator_update(gen), device)
    if "d" in parts:  # (the alias draws cost the same whatever Q is, so "d" alone keeps the initial Q)
        row["sdgar_d_epoch_s"] = _timed(lambda: sd.discriminator_epoch(train_data, gen), device)
        row["irgan_regen_s"] = _timed(lambda: setattr(ir, "d_negatives", ir.generate_for_d(train_data, gen)),
                                      device)  # softmax over all items per user, every d_regen_every D epochs
        row["irgan_d_epoch_s"] = row["irgan_regen_s"] + _timed(lambda: ir.d_epoch(train_data, gen), device)
    if "g" in parts:
        row["irgan_g_epoch_s"] = _timed(lambda: ir.g_epoch(train_data, gen), device)
    row["d_ratio"] = row["irgan_d_epoch_s"] / row["sdgar_d_epoch_s"] if "d" in parts else nan
    row["g_ratio"] = row["irgan_g_epoch_s"] / row["sdgar_g_update_s"] if "g" in parts else nan
    return row


def scaling_benchmark(items: Sequence[int] = SCALING_ITEMS, users: int = 3_000, density: float = 0.002,
                      seed: int = 0, device: str = "auto", out: Path | None = None,
                      echo: Callable[[str], None] = print, parts: Sequence[str] = ("d", "g"),
                      optimizer: str = "adam") -> pd.DataFrame:
    """Seconds per epoch of SD-GAR's D epoch (alias draws from Q included) and generator update vs IRGAN's D epoch
    (its softmax-over-all-items negative generation included) and G epoch (REINFORCE over the full softmax), on
    synthetic data with the same users and density at each #items, default constants for both models.

    An IRGAN D epoch here includes regenerating its negatives (official: every 5th D epoch; ``irgan_regen_s`` is
    that part alone). ``parts`` picks what to time: "d" (D epochs), "g" (generator steps) or both. ``optimizer``
    ("adam" dense as in both official codes, or "lazy_adam" row-sparse) is used by both models' D (and IRGAN's G)."""
    from neurips20_common import select_device

    dev = select_device(device)
    rows = []
    for n_items in items:
        row = scaling_row(n_items, users, density, seed, dev, parts, optimizer)
        rows.append(row)
        nan = float("nan")
        echo(f"{row['items']:>7d} items, {row['train_interactions']:>8d} train: "
             f"SD-GAR D {row.get('sdgar_d_epoch_s', nan):7.2f}s G {row.get('sdgar_g_update_s', nan):7.2f}s | "
             f"IRGAN D {row.get('irgan_d_epoch_s', nan):7.2f}s G {row.get('irgan_g_epoch_s', nan):7.2f}s | "
             f"ratio D {row['d_ratio']:5.1f}× G {row['g_ratio']:5.1f}×")
    df = pd.DataFrame(rows)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "scaling.csv", index=False)
        plot_scaling(df, out / "scaling.png", str(dev))
        echo(f"wrote {out / 'scaling.csv'} and {out / 'scaling.png'}")
    return df


def plot_scaling(df: pd.DataFrame, path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for col, label, style in [("sdgar_d_epoch_s", "SD-GAR D epoch", "C0-o"),
                              ("irgan_d_epoch_s", "IRGAN D epoch", "C1-o"),
                              ("sdgar_g_update_s", "SD-GAR G update", "C0--s"),
                              ("irgan_g_epoch_s", "IRGAN G epoch", "C1--s")]:
        if col in df and df[col].notna().any():
            ax.plot(df["items"], df[col], style, label=label)
    ax.set(xscale="log", yscale="log", xlabel="#items", ylabel="seconds", title=f"time per epoch ({device})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    for col, style, label in [("d_ratio", "C2-o", "D: IRGAN / SD-GAR"), ("g_ratio", "C3--s", "G: IRGAN / SD-GAR")]:
        if df[col].notna().any():
            ax2.plot(df["items"], df[col], style, label=label)
    ax2.set(xscale="log", xlabel="#items", ylabel="speed-up of SD-GAR (×)", title="IRGAN time / SD-GAR time")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
