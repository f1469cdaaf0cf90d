"""Issue 21's speed table: sdgar next to ``implicit`` in one run, on the Gowalla LightGCN split, same threads.

    python sdgar/benchmarks/speed.py --data-root ../shared/data --threads 2 [--skip-slow] [--s500]

Rows (seconds; the ratio column is sdgar / the implicit reference named in the row):
- BPR epoch, d = f = 32: implicit's BPR (Hogwild SGD) vs sdgar BPR ``engine=fast`` (Hogwild Adagrad) and the
  faithful torch engine (dense Adam, batch 512);
- ALS iteration, 128 factors (3 CG steps each side): implicit vs sdgar's numba CG;
- SD-GAR D epoch, official (d 32, |S| 5): faithful torch engine (dense Adam, batch 512) and fast engine;
- SD-GAR D epoch, ``--preset best`` shape (d 128, |S| 50): fast engine (and the torch engine with lazy Adam, which
  ``best`` uses, unless --skip-slow) vs implicit's BPR epoch at f = 128; with --s500 also |S| = 500;
- generator update (spec §1.6, K 64, |S_c| = |S_i| = 64): numba (``gen_update=auto`` on the CPU) and torch, against
  d 32 and d 128 discriminators, after one update (so x has the peaked rows training sees);
- full-ranking evaluation, d 128, all cutoffs (top 50 over all items, train items masked): the bfloat16 candidate
  path where the CPU has bf16 dot products, and the float32 one.

Each row prints the load average when it finished (this box is shared: only same-run ratios mean much).

Every sdgar row runs after a warm-up call (numba compiles on first use; torch allocates), so the numbers are
steady-state epochs. implicit is optional: without it its column says "not installed". The data must be there
(../shared/data/gowalla); the script says so and stops otherwise.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from sdgar import kernels
from sdgar.data import DataConfig, load_dataset
from sdgar.evaluate import DEFAULT_CUTOFFS, FactorScorer, evaluate, has_bf16_dot
from sdgar.models.als import WMF, ALSConfig
from sdgar.models.base import TrainData
from sdgar.models.bpr import BPR, BPRConfig
from sdgar.models.sdgar import SDGAR, SDGARConfig

DEFAULT_ROOT = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def timed(fn, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def implicit_bpr_epoch(train, factors: int, threads: int, epochs: int = 3) -> float | None:
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        return None
    model = BayesianPersonalizedRanking(factors=factors, iterations=epochs, num_threads=threads, random_state=0)
    model.fit(train[:1000].tocsr(), show_progress=False)  # warm-up
    model = BayesianPersonalizedRanking(factors=factors, iterations=epochs, num_threads=threads, random_state=0)
    start = time.perf_counter()
    model.fit(train, show_progress=False)
    return (time.perf_counter() - start) / epochs


def implicit_als_iteration(train, threads: int, iterations: int = 3) -> float | None:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, single-threaded BLAS
        model = AlternatingLeastSquares(factors=128, alpha=40.0, regularization=0.01, iterations=iterations,
                                        random_state=0, num_threads=threads)
        start = time.perf_counter()
        model.fit(train, show_progress=False)
        return (time.perf_counter() - start) / iterations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default=str(DEFAULT_ROOT))
    ap.add_argument("--skip-slow", action="store_true", help="skip the torch-engine D epoch at d 128, |S| 50")
    ap.add_argument("--s500", action="store_true", help="also time a fast D epoch at d 128, |S| 500")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kernels.set_threads(args.threads)
    root = Path(args.data_root)
    if not (root / "gowalla" / "train.txt").is_file():
        raise SystemExit(f"{root / 'gowalla'}/train.txt not found: pass --data-root (the folder holding gowalla/)")
    data = load_dataset(DataConfig(data="gowalla", data_root=str(root)))
    train = TrainData(data.train)
    csr = data.train.tocsr().astype(np.float32)
    print(f"Gowalla LightGCN split: {data.n_users:,} users × {data.n_items:,} items, {data.train.nnz:,} train pairs; "
          f"{args.threads} threads; load {os.getloadavg()[0]:.2f}; torch {torch.__version__}", flush=True)
    try:
        import implicit
        print(f"implicit {implicit.__version__} (CPU models, num_threads={args.threads})", flush=True)
    except ImportError:
        print("implicit: not installed (pip install implicit) - its column is skipped", flush=True)
    print(f"\n{'work':58s} {'implicit':>9s} {'sdgar':>9s} {'ratio':>7s}  target")

    def row(name: str, ref: float | None, ours: float, target: str = "") -> None:
        ref_s = f"{ref:9.2f}" if ref is not None else f"{'n/a':>9s}"
        ratio = f"{ours / ref:6.1f}×" if ref else f"{'':>7s}"
        print(f"{name:58s} {ref_s} {ours:9.2f} {ratio}  {target}  (load {os.getloadavg()[0]:.1f})", flush=True)

    gen = torch.Generator().manual_seed(0)
    ref32 = implicit_bpr_epoch(csr, 32, args.threads)
    ref128 = implicit_bpr_epoch(csr, 128, args.threads)

    def model_epoch(model, repeat: int = 1) -> float:
        model.train_epoch(train, gen)  # warm-up (numba compile / allocations)
        return timed(lambda: model.train_epoch(train, gen), repeat)

    torch.manual_seed(0)
    row("BPR epoch, d = f = 32, engine fast (Hogwild row-wise Adagrad)", ref32,
        model_epoch(BPR(data.n_users, data.n_items, BPRConfig(dim=32, engine="fast")), 3), "≤ 2× implicit")
    torch.manual_seed(0)
    row("BPR epoch, d = 32, torch engine (dense Adam, batch 512)", ref32,
        model_epoch(BPR(data.n_users, data.n_items, BPRConfig(dim=32))))

    als = WMF(data.n_users, data.n_items, ALSConfig(factors=128))
    row("ALS iteration, 128 factors (numba CG, 3 steps)", implicit_als_iteration(csr, args.threads),
        model_epoch(als, 3), "≤ 1.2× implicit")

    def sdgar(d: int, s: int, **over) -> SDGAR:
        torch.manual_seed(0)
        m = SDGAR(data.n_users, data.n_items, SDGARConfig(dis_emb_dim=d, dis_sample_num=s, **over))
        m.g.rebuild_tables()
        m.gen_updates += 1  # time D epochs only (no epoch-0 generator update)
        return m

    def d_epoch(m: SDGAR, warm_up: bool = True) -> float:
        if warm_up:
            m.discriminator_epoch(train, gen)
        return timed(lambda: m.discriminator_epoch(train, gen))

    row("SD-GAR D epoch official (d 32, |S| 5), torch engine dense Adam", ref32, d_epoch(sdgar(32, 5)),
        "(vs implicit BPR f 32)")
    row("SD-GAR D epoch official (d 32, |S| 5), engine fast", ref32, d_epoch(sdgar(32, 5, engine="fast")))
    fast128 = sdgar(128, 50, engine="fast")
    row("SD-GAR D epoch (d 128, |S| 50), engine fast", ref128, d_epoch(fast128), "≤ 20× implicit BPR f 128")
    if not args.skip_slow:
        row("SD-GAR D epoch (d 128, |S| 50), torch engine lazy Adam", ref128,
            d_epoch(sdgar(128, 50, optimizer="lazy_adam")))
    if args.s500:
        row("SD-GAR D epoch (d 128, |S| 500), engine fast", ref128,
            d_epoch(sdgar(128, 500, engine="fast"), warm_up=False), "minutes (no warm-up: compiled by the |S| 50 row)")

    for d in (32, 128):
        m = sdgar(d, 5, gen_update="numba")
        m.generator_update(gen)  # numba compiles; x is fit once (its peaked rows are what training sees)
        for kind in ("numba", "torch"):
            m.config.gen_update = kind
            row(f"generator update (§1.6, K 64, 64/64 samples) vs d {d}, {kind}", None,
                timed(lambda m=m: m.generator_update(gen)), "≤ the d 128 |S| 50 D epoch")

    user, item, bias = fast128.d.factors()
    scorer = FactorScorer(user, item, bias)
    evaluate(scorer, data.train[:100], data.test[:100], DEFAULT_CUTOFFS)
    for bf16 in (None, False):
        label = "bf16 candidates" if bf16 is None and has_bf16_dot() else "float32"
        if bf16 is False or label != "float32":
            row(f"full-ranking evaluation, d 128, all cutoffs, {label}", None,
                timed(lambda bf16=bf16: evaluate(scorer, data.train, data.test, DEFAULT_CUTOFFS, bf16=bf16)), "≤ 5 s")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
