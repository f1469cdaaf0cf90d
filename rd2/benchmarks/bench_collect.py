"""Collection throughput (env steps/s, random policy, into the single-frame replay) in one run (spec §10.7):

1. ale-py's native ``AtariVectorEnv`` (C++ threads) — what ``rd2 decompose`` uses when it is available;
2. one preprocessed gymnasium env stepped in a plain python loop;
3. gymnasium's ``SyncVectorEnv`` over the same preprocessed envs.

Each path writes into a ReplayBuffer through the same Collector, so the numbers include the replay cost.

    python benchmarks/bench_collect.py --env Pong --steps 20000 --num-envs 8
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from rd2.envs import Collector, make_env, make_vector_env, native_vector_available, random_policy
from rd2.replay import ReplayBuffer


class _Single:
    """A single gymnasium env seen as a 1-env vector env with NEXT_STEP autoreset (the plain-loop baseline)."""

    def __init__(self, env) -> None:
        self.env, self.num_envs = env, 1
        self.single_action_space = env.action_space
        self._reset_next = False

    def reset(self, seed=None):
        obs, info = self.env.reset(seed=seed)
        return obs[None], info

    def step(self, actions):
        if self._reset_next:
            self._reset_next = False
            obs, _ = self.env.reset()
            return obs[None], np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), {}
        obs, r, term, trunc, _ = self.env.step(int(actions[0]))
        self._reset_next = term or trunc
        return obs[None], np.array([r]), np.array([term]), np.array([trunc]), {}

    def close(self) -> None:
        self.env.close()


def measure(name: str, env, steps: int, seed: int) -> float:
    replay = ReplayBuffer(int(steps * 1.1) + 64 * env.num_envs, env.num_envs)
    col = Collector(env, replay, seed=seed)
    policy = random_policy(env.single_action_space, np.random.default_rng(seed))
    col.run(min(2000, steps // 10), policy)  # warm-up
    start, t0 = col.steps, time.perf_counter()
    col.run(start + steps, policy)
    rate = (col.steps - start) / (time.perf_counter() - t0)
    env.close()
    print(f"{name:42s} {rate:9.0f} steps/s   ({col.steps - start} transitions)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="Pong")
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{args.env}: {args.steps} random-policy steps per path, {args.num_envs} envs for the vector paths, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    rates = {}
    if native_vector_available():
        rates["ale"] = measure(f"ale-py AtariVectorEnv x{args.num_envs} (native)",
                               make_vector_env(args.env, args.num_envs, backend="ale"), args.steps, args.seed)
    else:
        print("ale-py AtariVectorEnv: not available in this ale-py (needs >= 0.11); skipped")
    rates["single"] = measure("gymnasium single env (python loop)", _Single(make_env(args.env)), args.steps,
                              args.seed)
    rates["sync"] = measure(f"gymnasium SyncVectorEnv x{args.num_envs}",
                            make_vector_env(args.env, args.num_envs, backend="gymnasium"), args.steps, args.seed)
    if "ale" in rates:
        print(f"native vs single: {rates['ale'] / rates['single']:.1f}x, native vs SyncVectorEnv: "
              f"{rates['ale'] / rates['sync']:.1f}x")


if __name__ == "__main__":
    main()
