"""SD-GAR timings at Gowalla scale (spec §6 G2/G4), all in one run.

Prints: D-epoch time (negative sampling included; dense Adam as the official code, and lazy Adam), one generator
update (steps 1–3 of spec §1.6), one full-ranking evaluation of every test user over all items, and the time to
draw one epoch of D negatives with SD-GAR's two-level alias tables vs an IRGAN-style softmax over all items
(per user: scores of all M items, softmax, multinomial draws), with their ratio.

Data: the LightGCN Gowalla split from ../shared/data/gowalla when it is there (or --data-root); otherwise a
synthetic dataset of the same size (say so in the output).

    python benchmarks/bench_sdgar.py --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from sdgar.data import DataConfig, load_dataset
from sdgar.evaluate import evaluate
from sdgar.models.base import TrainData
from sdgar.models.sdgar import SDGAR, SDGARConfig

DEFAULT_ROOT = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def irgan_negatives(user: torch.Tensor, item: torch.Tensor, bias: torch.Tensor, counts: np.ndarray,
                    gen: torch.Generator, temperature: float = 0.2, chunk: int = 1024) -> int:
    """IRGAN's D-data generation: j ~ softmax(f_G(u, ·)/0.2) over all M items, |pos_u|·5 draws per user."""
    drawn = 0
    for s in range(0, user.shape[0], chunk):
        logits = (user[s:s + chunk] @ item.T + bias) / temperature
        cdf = torch.softmax(logits, dim=1).cumsum_(1)
        n = int(counts[s:s + chunk].max()) if len(counts[s:s + chunk]) else 0
        if n == 0:
            continue
        # inverse-CDF draws (log M each); rows draw up to the chunk's max count, a negligible extra
        uniform = torch.rand(cdf.shape[0], n, generator=gen) * cdf[:, -1:]
        torch.searchsorted(cdf, uniform)
        drawn += int(counts[s:s + chunk].sum())
    return drawn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default=str(DEFAULT_ROOT))
    ap.add_argument("--skip-dense", action="store_true", help="skip the dense-Adam D epoch (the slowest part)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    root = Path(args.data_root)
    if (root / "gowalla" / "train.txt").is_file():
        data = load_dataset(DataConfig(data="gowalla", data_root=str(root)))
        source = f"Gowalla LightGCN split from {root / 'gowalla'}"
    else:
        print(f"NOTE: {root / 'gowalla'} not found; using synthetic data of Gowalla size instead")
        data = load_dataset(DataConfig(data="synthetic", synthetic_size="gowalla"))
        source = "synthetic, Gowalla size"
    train = TrainData(data.train)
    print(f"data: {source}: {data.n_users} users × {data.n_items} items, {data.train.nnz} train positives; "
          f"{args.threads} threads, torch {torch.__version__}")
    print(f"{'what':55s}  {'seconds':>9s}  detail", flush=True)

    def report(name: str, secs: float, detail: str) -> None:
        print(f"{name:55s}  {secs:9.2f}  {detail}", flush=True)

    torch.manual_seed(0)
    model = SDGAR(data.n_users, data.n_items, SDGARConfig())
    gen = torch.Generator().manual_seed(0)

    t_build, _ = timed(model.g.rebuild_tables)
    report("alias tables build (N·K + K·M entries)", t_build, f"{model.g.x.numel() + model.g.y.numel():,} entries")
    t_g, _ = timed(lambda: model.generator_update(gen))
    report("generator update (steps 1-3, §1.6)", t_g,
           f"{data.n_users * 64 * 2 + 64 * data.n_items * 64:,} sampled (u, j) pairs")

    users, _ = train.torch_pairs()
    t_alias, (negs, _, reject) = timed(lambda: model.draw_negatives(users, train, gen))
    report("D negatives for one epoch, SD-GAR alias (+ log Q)", t_alias,
           f"{negs.numel():,} draws, rejection rate {reject:.3f}")
    p, q, b = model.d.factors()
    counts = np.diff(data.train.indptr) * 5
    t_irgan, drawn = timed(lambda: irgan_negatives(p, q, b, counts, gen))
    report("D negatives for one epoch, IRGAN softmax over all M", t_irgan, f"{drawn:,} draws")
    print(f"{'':55s}  -> alias draws are {t_irgan / t_alias:.1f}x faster than the IRGAN softmax", flush=True)

    t_eval, _ = timed(lambda: evaluate(model.scores, data.train, data.test))
    report("full-ranking evaluation (all test users × all items)", t_eval,
           f"{int((np.diff(data.test.indptr) > 0).sum()):,} users, top 50 of {data.n_items:,} items")

    for optimizer in (["lazy_adam"] if args.skip_dense else ["lazy_adam", "adam"]):
        torch.manual_seed(0)
        m = SDGAR(data.n_users, data.n_items, SDGARConfig(optimizer=optimizer))
        m.g.load_state_dict(model.g.state_dict())
        m.g.rebuild_tables()
        t_d, d_stats = timed(lambda m=m: m.discriminator_epoch(train, gen))
        steps = -(-data.train.nnz // 512)
        report(f"D epoch, {optimizer} (batch 512, sampling included)", t_d,
               f"{steps} steps, {1000 * t_d / steps:.1f} ms/step, ESS {d_stats['ess']:.2f} of 5")

if __name__ == "__main__":
    main()
