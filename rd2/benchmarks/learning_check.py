"""Learning must not regress (issue 8's check): each algorithm for 15k agent steps on MsPacman with the `cpu`
preset, its training return over the episodes that ended after 10k steps, next to the random-policy return.

    python rd2/benchmarks/learning_check.py --num-envs 8 --out rd2/benchmarks/results/mspacman_15k.csv

Random MsPacman with this preprocessing: 262 ± 103 per episode (benchmarks/random_baseline.py, README).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from rd2.config import TrainConfig, agent_config
from rd2.train import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="MsPacman")
    p.add_argument("--algos", default="dqn,rainbow,rd2,drdrl,hra")
    p.add_argument("--steps", type=int, default=15_000)
    p.add_argument("--after", type=int, default=10_000, help="episodes ending after this many steps count")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--set", dest="sets", action="append", default=[], help="algo:key=value, e.g. rd2:noisy=false")
    p.add_argument("--out", default="rd2/benchmarks/results/mspacman_15k.csv")
    args = p.parse_args()
    rows = []
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    for algo in args.algos.split(","):
        overrides = {}
        for item in args.sets:
            a, _, kv = item.partition(":")
            if a == algo:
                k, _, v = kv.partition("=")
                overrides[k] = v
        cfg = TrainConfig(env=args.env, algo=algo, preset="cpu", frames=4 * args.steps, seed=args.seed,
                          num_envs=args.num_envs, eval_every=0, ckpt_every=0, progress=False, device="cpu")
        with tempfile.TemporaryDirectory() as tmp:
            summary = train(cfg, agent_config(algo, "cpu", overrides), run_dir=Path(tmp) / "run")
            path = Path(tmp) / "run" / "progress.csv"
            prog = pd.read_csv(path) if path.exists() else pd.DataFrame({"step": [], "return_raw": []})
        late = prog[prog["step"] > args.after]["return_raw"].to_numpy()
        row = {"algo": algo, "num_envs": args.num_envs, "seed": args.seed, "episodes_after": len(late),
               "return_after_mean": float(np.mean(late)) if len(late) else float("nan"),
               "return_after_std": float(np.std(late)) if len(late) else float("nan"),
               "episodes": len(prog), "sps": summary["sps"], **{f"set_{k}": v for k, v in overrides.items()}}
        rows.append(row)
        print(f"{algo:8s} return after {args.after} steps: {row['return_after_mean']:7.1f} ± "
              f"{row['return_after_std']:6.1f} ({len(late)} episodes); {summary['sps']:.0f} SPS", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
