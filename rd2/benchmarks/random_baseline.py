"""Random-policy returns on an Atari game with this package's preprocessing: the "above random" line for
`rd2 train` curves (spec §10). One episode per env until ``--episodes`` have finished.

    python benchmarks/random_baseline.py --env MsPacman --episodes 20
"""

from __future__ import annotations

import argparse

import numpy as np

from rd2.envs.atari import make_vector_env
from rd2.envs.collector import Collector, random_policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="Pong")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    env = make_vector_env(args.env, args.num_envs)
    col = Collector(env, None, seed=args.seed)
    policy = random_policy(env.single_action_space, np.random.default_rng(args.seed))
    episodes: list[dict[str, float]] = []
    while len(episodes) < args.episodes:
        col.run(col.steps + 1000, policy)
        episodes.extend(col.pop_episodes())
    env.close()
    ret = np.array([e["return_raw"] for e in episodes[: args.episodes]])
    print(f"random {args.env}: {len(ret)} episodes, return {ret.mean():.1f} ± {ret.std():.1f} "
          f"(min {ret.min():.0f}, max {ret.max():.0f})")


if __name__ == "__main__":
    main()
