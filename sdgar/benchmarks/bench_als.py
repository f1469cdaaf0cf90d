"""WMF/ALS in sdgar vs the ``implicit`` library's ALS: fit time and quality on the same split and evaluator.

    python benchmarks/bench_als.py [--data citeulike-t,gowalla] [--iterations 15] [--threads 1]

Reads ``../shared/data/<name>`` (skips with a message when absent). Both models use 128 factors, α = 40,
reg 0.01; sdgar's ALS is run with implicit's confidence (α·r) and with HKV's (1 + α·r). Both are scored by
``sdgar.evaluate`` (implicit's own metrics differ, spec §3.3). ``implicit`` is optional (the ``bench`` extra):
without it only sdgar's numbers are printed. Issue 10's reference (implicit on this machine): citeulike-t
Recall@20 0.2279, NDCG@50 0.1649; Gowalla Recall@20 0.1624, NDCG@20 0.1356.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from sdgar.data import load_dataset
from sdgar.data.registry import DataConfig
from sdgar.evaluate import FactorScorer, evaluate
from sdgar.models.als import WMF, ALSConfig
from sdgar.models.base import TrainData

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data from the project root
SHOW = ("Recall@20", "NDCG@20", "NDCG@50", "P@10")


def fit_sdgar(data, iterations: int, confidence: str, solver: str) -> tuple[float, dict[str, float]]:
    torch.manual_seed(0)
    model = WMF(data.n_users, data.n_items, ALSConfig(confidence=confidence, solver=solver))
    train = TrainData(data.train)
    start = time.perf_counter()
    for _ in range(iterations):
        model.train_epoch(train, torch.Generator())
    seconds = time.perf_counter() - start
    return seconds, evaluate(model.scores, data.train, data.test, (10, 20, 50))


def fit_implicit(data, iterations: int, threads: int) -> tuple[float, dict[str, float]] | None:
    try:
        import implicit.cpu.als
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    model = implicit.cpu.als.AlternatingLeastSquares(factors=128, alpha=40.0, regularization=0.01,
                                                     iterations=iterations, random_state=0, num_threads=threads)
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, single-threaded BLAS
        start = time.perf_counter()
        model.fit(data.train.tocsr(), show_progress=False)
        seconds = time.perf_counter() - start
    scorer = FactorScorer(torch.from_numpy(np.asarray(model.user_factors)),
                          torch.from_numpy(np.asarray(model.item_factors)))
    return seconds, evaluate(scorer, data.train, data.test, (10, 20, 50))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="citeulike-t,gowalla")
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cholesky", action="store_true", help="also time the exact Cholesky solver")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.data.split(","):
        folder = DATA_ROOT / name
        if not folder.is_dir():
            print(f"skip {name}: {folder} is absent (real data are only for benchmarks)")
            continue
        data = load_dataset(DataConfig(data=str(folder)))
        print(f"\n{name}: {data.n_users} users × {data.n_items} items, {data.train.nnz} train, "
              f"{args.iterations} iterations, {args.threads} thread(s)")
        print(f"{'model':34s}{'fit s':>8s}" + "".join(f"{m:>11s}" for m in SHOW))
        rows = [("sdgar ALS cg, c = α·r", "alpha", "cg"), ("sdgar ALS cg, c = 1 + α·r", "one_plus_alpha", "cg")]
        if args.cholesky:
            rows.append(("sdgar ALS cholesky, c = 1 + α·r", "one_plus_alpha", "cholesky"))
        results = {}
        for label, confidence, solver in rows:
            results[label] = fit_sdgar(data, args.iterations, confidence, solver)
        imp = fit_implicit(data, args.iterations, args.threads)
        if imp is None:
            print("(implicit is not installed: pip install implicit to compare)")
        else:
            results["implicit ALS (cg, c = α·r)"] = imp
        for label, (seconds, m) in results.items():
            print(f"{label:34s}{seconds:8.1f}" + "".join(f"{m[k]:11.4f}" for k in SHOW))
        if imp is not None:
            ours = results["sdgar ALS cg, c = α·r"]
            print(f"fit time ratio sdgar/implicit: {ours[0] / imp[0]:.2f}; "
                  f"Recall@20 difference: {ours[1]['Recall@20'] - imp[1]['Recall@20']:+.4f}")


if __name__ == "__main__":
    main()
