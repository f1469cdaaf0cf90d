"""Time per epoch as #items grows: SD-GAR vs IRGAN (= ``sdgar benchmark scaling``), and sdgar's BPR vs
``implicit``'s BPR on the same synthetic data and threads (issue 7; ``implicit`` is an optional extra).

    python benchmarks/scaling.py [--items 10000,20000,40000,80000,160000] [--users 3000] [--threads 2]
                                 [--parts both|d|g|none] [--out runs/scaling]

BPR: one epoch of sdgar's BPR (d = 32, dense Adam, batch 512, uniform negatives) vs one iteration of
``implicit.cpu.bpr.BayesianPersonalizedRanking(factors=32)`` (Hogwild SGD, popularity-biased negatives) with
the same number of threads. Both do one pass over the training pairs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sdgar.compare import SCALING_ITEMS, scaling_benchmark, scaling_data
from sdgar.models.base import TrainData
from sdgar.models.bpr import BPR


def bpr_epoch_seconds(data: TrainData, threads: int) -> tuple[float, float | None]:
    torch.manual_seed(0)
    model = BPR(data.n_users, data.n_items)
    gen = torch.Generator().manual_seed(0)
    model.train_epoch(data, gen)  # warm-up (builds the membership set)
    start = time.perf_counter()
    model.train_epoch(data, gen)
    ours = time.perf_counter() - start
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        return ours, None
    theirs = BayesianPersonalizedRanking(factors=32, iterations=1, num_threads=threads, random_state=0)
    start = time.perf_counter()
    theirs.fit(data.matrix.tocsr(), show_progress=False)
    return ours, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default=",".join(map(str, SCALING_ITEMS)))
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--density", type=float, default=0.002)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parts", default="both", choices=["both", "d", "g", "none"])
    ap.add_argument("--out", default="runs/scaling")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(x) for x in args.items.split(",")]
    if args.parts != "none":
        scaling_benchmark(sizes, args.users, args.density, out=Path(args.out), device="cpu",
                          parts=("d", "g") if args.parts == "both" else (args.parts,))
    print(f"\nBPR, one epoch, {args.threads} thread(s)")
    print(f"{'items':>8s}{'train':>10s}{'sdgar s':>10s}{'implicit s':>12s}{'ratio':>8s}")
    for n_items in sizes:
        data = scaling_data(n_items, args.users, args.density, 0)
        ours, theirs = bpr_epoch_seconds(data, args.threads)
        ratio = f"{ours / theirs:8.1f}" if theirs else "     n/a"
        print(f"{n_items:8d}{data.n_interactions:10d}{ours:10.2f}"
              + (f"{theirs:12.2f}" if theirs else "  (no implicit)") + ratio, flush=True)


if __name__ == "__main__":
    main()
