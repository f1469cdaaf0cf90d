"""Issue 10: hyperparameter sweep for SD-GAR's ``best`` preset, selected on a validation split carved from train.

    python benchmarks/sweep_best.py --out runs/sweep-best --epochs 30 --patience 3 \\
        --base model.dis_emb_dim=128 --base model.optimizer=lazy_adam \\
        --grid model.learning_rate=0.003,0.01

Every combination of the ``--grid`` values (on top of the ``--base`` overrides and the ``citeulike`` preset) is one
ordinary training run on citeulike-t with ``valid_frac`` 0.1 (split seed 0): the best epoch is chosen on validation
NDCG@50 only, and test is not evaluated at all unless ``--eval-test`` is given (issue 17: test is read once, for
the chosen setting, by ``sdgar compare``). Runs go one after the other in this process (one thread by default: the
machine is shared). A run whose folder holds ``result.json`` is reused, so stages can be added and the sweep
resumed; an interrupted run, or a shorter one of the same settings (more ``--epochs``), is continued from its last
checkpoint (exact resume, see :func:`resumable`), so one long run can be split over several pieces. Outputs in
``--out``: ``summary.csv`` (one row per run, sorted by validation NDCG@50) and ``curves.csv`` (validation NDCG@50 /
Recall@20 at every evaluation, cumulative seconds, mean SNIS ESS and D / G seconds of that epoch when the model
logs them).
``--model als`` gives the reference on the same split. Skips with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from neurips20_common import RunDir

from sdgar.config import make_config, parse_set
from sdgar.data import load_dataset
from sdgar.train import train

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data from the project root
SHORT = {"dis_emb_dim": "d", "learning_rate": "lr", "dis_lambda": "lam", "temperature": "T",
         "dis_sample_num": "S", "batch_size": "bs", "lr_decay": "decay", "optimizer": "opt", "snis_grad": "snis",
         "epochs": "ep", "seed": "seed", "reg": "reg", "factors": "f", "alpha": "a", "neg_weight": "nw",
         "patience": "pat", "fast_lr": "flr", "gen_every": "ge", "gen_emb_dim": "K", "engine": "eng",
         "score": "score", "score_scale": "scale", "iterations": "it"}


def combos(grid: list[str]) -> list[list[str]]:
    """``["model.lr=1,2", "model.T=3"]`` -> every combination as a list of ``KEY=VALUE`` strings."""
    axes = []
    for item in grid:
        key, _, values = item.partition("=")
        axes.append([f"{key}={v}" for v in values.split(",")])
    return [list(c) for c in itertools.product(*axes)] if axes else [[]]


def run_name(model: str, sets: list[str]) -> str:
    parts = [model]
    for s in sets:
        key, _, value = s.partition("=")
        name = key.partition(".")[2]
        parts.append(f"{SHORT.get(name, name)}{value}")
    return "_".join(parts).replace("lazy_adam", "lazy")


def resumable(folder: Path, config_json: dict[str, Any]) -> bool:
    """Continue the run in ``folder`` instead of starting over: an interrupted run of the same config (config.json
    equal, a checkpoint), so a long run can be split into pieces (``timeout -s INT 14m ...``, then the same command
    again), or a finished shorter run of the same config but fewer epochs that ended on an evaluation epoch
    (``--epochs 20`` then ``--epochs 30``: the same run as 30 at once, since nothing before epoch 20 depends on the
    total; exact resume)."""
    cfg, ckpts = folder / "config.json", folder / "checkpoints"
    if not cfg.is_file() or not ckpts.is_dir() or not any(ckpts.glob("ckpt-*.pt")):
        return False
    old = json.loads(cfg.read_text())
    if old == config_json:
        return not (folder / "result.json").is_file()
    old_epochs, new = old["train"]["epochs"], config_json["train"]
    same = {**old, "train": {**old["train"], "epochs": new["epochs"]}} == config_json
    return (same and old_epochs < new["epochs"] and old_epochs % new["eval_every"] == 0
            and not config_json["model"].get("skip_last_gen_update", False))


def curve_rows(name: str, folder: Path) -> pd.DataFrame:
    m = pd.read_csv(folder / "metrics.csv")
    m["seconds"] = (m["epoch_seconds"] + m.get("eval_seconds", 0).fillna(0)).cumsum()
    m["train_seconds"] = m["epoch_seconds"].cumsum()
    m = m.dropna(subset=["valid_NDCG@50"])
    cols = ["epoch", "valid_NDCG@50", "valid_Recall@20", "NDCG@50", "Recall@20", "seconds", "train_seconds",
            "ess", "d_seconds", "g_seconds"]
    out = m[[c for c in cols if c in m]].rename(columns={"NDCG@50": "test_NDCG@50", "Recall@20": "test_Recall@20"})
    out.insert(0, "run", name)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="citeulike")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    ap.add_argument("--model", default="sdgar")
    ap.add_argument("--preset", default="citeulike")
    ap.add_argument("--out", default="runs/sweep-best")
    ap.add_argument("--base", action="append", default=[], help="SECTION.KEY=VALUE applied to every run")
    ap.add_argument("--grid", action="append", default=[], help="SECTION.KEY=V1,V2,... swept (cartesian product)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--patience", type=int, default=3, help="evaluations without a new validation best (0 = off)")
    ap.add_argument("--valid-frac", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (timings are only comparable on one device)")
    ap.add_argument("--eval-test", action="store_true",
                    help="also evaluate test at every evaluation (off: test is not read)")
    args = ap.parse_args()

    root = Path(args.data_root)
    if not (root / args.data).is_dir() and not (root / f"{args.data}-t").is_dir():
        print(f"skipped: no {args.data} data under {root} (see /work/shared/data/README.md)")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_sets = {"data": args.data, "data_root": str(root), "valid_frac": args.valid_frac}
    train_base = {"epochs": args.epochs, "eval_every": args.eval_every, "patience": args.patience,
                  "threads": args.threads, "device": args.device, "eval_test": args.eval_test}
    dataset = None
    for sets in combos(args.grid):
        over = parse_set(args.base + sets)
        config = make_config(args.model, args.preset, {**data_sets, **over["data"]}, {**train_base, **over["train"]},
                             over["model"])
        name = run_name(args.model, args.base + sets)
        folder = out / name
        config_json = json.loads(json.dumps(config.to_dict()))
        done = folder / "result.json"
        if done.is_file() and json.loads(done.read_text())["config"] == config_json:
            print(f"reusing {folder}", flush=True)
            continue
        resume = resumable(folder, config_json)
        if folder.exists() and not resume:
            shutil.rmtree(folder)
        if dataset is None:
            dataset = load_dataset(config.data)
        print(f"\n=== {name} ===" + ("  (resumed from its last checkpoint)" if resume else ""), flush=True)
        run_dir = RunDir.open(folder) if resume else RunDir.create(out, name)
        if resume:  # an extended run: its config.json now says the new length
            done.unlink(missing_ok=True)
            run_dir.write_config(config_json)
        try:
            result = train(config, dataset, run_dir, resume=resume, echo=lambda s: print(s, flush=True))
        except KeyboardInterrupt:  # e.g. timeout -s INT: the last finished epoch's checkpoint is kept
            print(f"interrupted: {folder} keeps its last epoch's checkpoint; the same command continues it",
                  flush=True)
            return 130
        best = result.best
        metrics = pd.read_csv(folder / "metrics.csv")  # all epochs, also those before a resume
        seconds = float(metrics["epoch_seconds"].sum() + metrics.get("eval_seconds", pd.Series(dtype=float)).sum())
        row: dict[str, Any] = {"run": name, "sets": " ".join(args.base + sets), "best_epoch": result.best_epoch,
                               "epochs_run": int(metrics["epoch"].iloc[-1]),
                               "seconds": round(seconds, 1),
                               "valid_NDCG@50": best.get("valid_NDCG@50"),
                               "valid_Recall@20": best.get("valid_Recall@20"),
                               **({"test_NDCG@50": best.get("NDCG@50"), "test_Recall@20": best.get("Recall@20")}
                                  if args.eval_test else {})}
        done.write_text(json.dumps({"config": config_json, "row": row}))
        print(f"--> {name}: valid NDCG@50 {row['valid_NDCG@50']:.4f} at epoch {row['best_epoch']} "
              f"({row['seconds']:.0f}s)", flush=True)
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))]
    summary = pd.DataFrame([r["row"] for r in results]).sort_values("valid_NDCG@50", ascending=False)
    summary.to_csv(out / "summary.csv", index=False)
    curves = pd.concat([curve_rows(r["row"]["run"], out / r["row"]["run"]) for r in results], ignore_index=True)
    curves.to_csv(out / "curves.csv", index=False)
    print(summary.drop(columns="sets").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
