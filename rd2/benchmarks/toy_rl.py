"""Toy-game RL (spec §10.4): RD² sub-Q vs DQN vs HRA (true decomposition) at equal steps, several seeds.

Every algorithm runs with the ``toy`` preset (one controlled machinery: ε-greedy, n = 3, uniform replay), so they
differ only in how they use the reward. Prints mean ± std over seeds of the greedy evaluation return (mean of the
last two evaluations, 5 episodes each) and of the last 20 training episodes; writes a CSV.

    python benchmarks/toy_rl.py --steps 20000 --seeds 1 2 3 4 5 --algos rd2 dqn hra --out runs/toy_rl
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pandas as pd

from rd2.train import TrainConfig, agent_config, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--algos", nargs="+", default=["rd2", "dqn", "hra"])
    ap.add_argument("--out", default="runs/toy_rl")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="algo:key=value override, e.g. rd2:window_rewards=nonzero")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for algo in args.algos:
        for seed in args.seeds:
            run_dir = out / f"{algo}-s{seed}"
            if not (run_dir / "eval.csv").exists():
                cfg = TrainConfig(env="toy", algo=algo, preset="toy", frames=args.steps, seed=seed,
                                  eval_every=args.steps // 10, eval_episodes=5, ckpt_every=args.steps // 2,
                                  progress=False)
                overrides = {kv.partition("=")[0]: kv.partition("=")[2]
                             for a, _, kv in (item.partition(":") for item in args.sets) if a == algo}
                summary = train(cfg, agent_config(algo, "toy", overrides), run_dir=run_dir)
                sps = summary["sps"]
            else:
                sps = float("nan")
            ev = pd.read_csv(run_dir / "eval.csv")
            tr = pd.read_csv(run_dir / "progress.csv")
            row = {"algo": algo, "seed": seed, "steps": args.steps,
                   "eval_return": float(ev["return_raw_mean"].tail(2).mean()),
                   "train_return_last20": float(tr["return_raw"].tail(20).mean()),
                   "gold_last20": float(tr["ret_gold"].tail(20).mean()),
                   "monster_last20": float(tr["ret_monster"].tail(20).mean()), "sps": sps}
            rows.append(row)
            print(f"{algo:6s} seed {seed}: eval {row['eval_return']:6.2f}  train(last 20) "
                  f"{row['train_return_last20']:6.2f}  gold {row['gold_last20']:5.2f}  monster "
                  f"{row['monster_last20']:5.2f}  {sps:6.0f} steps/s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"summary-{'_'.join(args.algos)}.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{args.steps} steps, seeds {args.seeds} (mean ± std over seeds)")
    for algo in args.algos:
        r = [x for x in rows if x["algo"] == algo]
        ev = np.array([x["eval_return"] for x in r])
        trn = np.array([x["train_return_last20"] for x in r])
        print(f"  {algo:6s} eval return {ev.mean():6.2f} ± {ev.std():5.2f}   training return (last 20 episodes) "
              f"{trn.mean():6.2f} ± {trn.std():5.2f}")


if __name__ == "__main__":
    main()
