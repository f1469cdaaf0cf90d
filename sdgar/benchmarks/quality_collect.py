"""Issue 17: gather the validation sweeps (``benchmarks/sweep_best.py`` output folders) into the two result files.

    python benchmarks/quality_collect.py runs/q17/als-citeulike runs/q17/sdgar-citeulike runs/q17/als-gowalla \\
        runs/q17s6/sdgar-citeulike runs/q17s6/sdgar-gowalla \\
        --final runs/q17/final-citeulike runs/q17/final-gowalla runs/q17s6/final-gowalla --out benchmarks/results

Each folder is one sweep on one dataset (its name ends in ``-<data>``; the ``sweep`` column names it). Writes
``issue17_sweep_summary.csv`` (one row per setting tried, best validation NDCG@50 / Recall@20 and its epoch, sorted
within each dataset and model) and ``issue17_sweep_curves.csv`` (every evaluation of every setting: validation
metrics, cumulative seconds, mean SNIS ESS, D / G seconds); runs stopped before their last epoch are there too,
``finished`` False. Test is not in these files: the sweeps never evaluate it. ``--final`` folders are ``sdgar
compare`` outputs (named ``<anything>-<data>``) of the chosen settings: every run's row goes to
``issue17_test_runs.csv`` and each run's test curve (NDCG@50 / Recall@20 against training seconds, the
time-to-quality data) to ``issue17_test_curves.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_best import curve_rows


def stopped_row(metrics: Path) -> dict[str, Any] | None:
    """The summary row of a run stopped before its last epoch (no result.json; a negative stopped early, or one
    still to be continued): its best validation evaluation so far, ``finished`` False. None before any."""
    m = pd.read_csv(metrics)
    evals = m.dropna(subset=["valid_NDCG@50"]) if "valid_NDCG@50" in m else m.iloc[:0]
    if evals.empty:
        return None
    best = evals.loc[evals["valid_NDCG@50"].idxmax()]
    return {"run": metrics.parent.name, "sets": "", "best_epoch": int(best["epoch"]),
            "epochs_run": int(m["epoch"].iloc[-1]),
            "seconds": round(float(m["epoch_seconds"].sum() + m.get("eval_seconds", 0).sum()), 1),
            "valid_NDCG@50": best["valid_NDCG@50"], "valid_Recall@20": best["valid_Recall@20"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="+", type=Path, help="sweep_best.py --out folders, named <anything>-<data>")
    ap.add_argument("--final", nargs="*", type=Path, default=[], help="sdgar compare --out folders")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    rows, curves = [], []
    for sweep in args.sweeps:
        data = sweep.name.rsplit("-", 1)[-1]
        for metrics in sorted(sweep.glob("*/metrics.csv")):
            done = metrics.parent / "result.json"
            row = json.loads(done.read_text())["row"] if done.is_file() else stopped_row(metrics)
            if row is None:
                continue
            rows.append({"data": data, **row, "finished": done.is_file(), "sweep": sweep.as_posix()})
            curves.append(curve_rows(row["run"], metrics.parent).assign(data=data, sweep=sweep.as_posix()))
    if not rows:
        print("no finished sweep runs found")
        return 1
    summary = pd.DataFrame(rows)
    summary["model"] = summary["run"].str.split("_").str[0]
    summary = summary.sort_values(["data", "model", "valid_NDCG@50"], ascending=[True, True, False])
    curve = pd.concat(curves, ignore_index=True)
    curve = curve[["data", *[c for c in curve.columns if c != "data"]]]
    args.out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out / "issue17_sweep_summary.csv", index=False, float_format="%.5g")
    curve.to_csv(args.out / "issue17_sweep_curves.csv", index=False, float_format="%.5g")
    print(summary.drop(columns="sets").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    runs, test_curves = [], []
    for final in args.final:
        data = final.name.rsplit("-", 1)[-1]
        # every finished run's row (result.json), also those of an earlier compare call into the same folder
        table = pd.DataFrame([json.loads(p.read_text())["row"] for p in sorted(final.glob("*-seed*/result.json"))])
        table = table.assign(data=data, final=final.as_posix())
        runs.append(table)
        for r in table.itertuples():
            m = pd.read_csv(final / f"{r.model}-seed{r.seed}" / "metrics.csv")
            m["train_seconds"] = m["epoch_seconds"].cumsum()
            m = m.dropna(subset=["NDCG@50"])
            test_curves.append(pd.DataFrame({"data": data, "final": final.as_posix(), "model": r.model,
                                             "seed": r.seed, "epoch": m["epoch"],
                                             "train_seconds": m["train_seconds"], "test_NDCG@50": m["NDCG@50"],
                                             "test_Recall@20": m["Recall@20"]}))
    if runs:
        pd.concat(runs, ignore_index=True).to_csv(args.out / "issue17_test_runs.csv", index=False, float_format="%.5g")
        pd.concat(test_curves, ignore_index=True).to_csv(args.out / "issue17_test_curves.csv", index=False,
                                                         float_format="%.5g")
    return 0


if __name__ == "__main__":
    sys.exit(main())
