"""CPU milliseconds per gradient update of each agent, in one process (issue 19: where an update's time goes).

The agents are built as `benchmarks/sps.py` builds them (``cpu`` preset, hidden 512, batch 32, Gopher-shaped frames
4×84×84, 8 actions, K = 2), on a replay of random frames (rewards 0 / 20 / 100; a third of the steps rewarded,
more than in Gopher, so ``window_rewards=nonzero`` saves less here than in a game). Each row times ``--updates``
updates after a warm-up with ``time.process_time`` (torch runs single-threaded, so CPU time is what the update
costs, less sensitive to other jobs on a shared box than wall time) and prints the median. The reference row is
sps.py's CleanRL ``dqn_atari`` update (Adam, NCHW, float32). Rows: ``algo`` or ``algo:{json overrides}``; the
override ``"compile": true`` torch.compiles both networks first.

    python rd2/benchmarks/update_ms.py reference dqn 'dqn:{"torso_dtype": "bfloat16"}' rd2 'rd2:{"dec_every": 4}'
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from torch import nn

from rd2.agents import ALGOS
from rd2.agents.memory import AgentReplay
from rd2.config import agent_config
from rd2.train import keep_freed_memory

OBS, ACTIONS, K = (4, 84, 84), 8, 2


def reference_ms(updates: int, rng: np.random.Generator) -> float:
    """sps.py's reference update: y = r + γ max Q(s'; θ⁻), MSE, plain Adam; median CPU ms."""

    def q_net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                             nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
                             nn.Linear(512, ACTIONS))

    q, target = q_net(), q_net()
    opt = torch.optim.Adam(q.parameters(), lr=1e-4)
    obs = torch.as_tensor(rng.integers(0, 255, (8, 32, *OBS), dtype=np.uint8))
    nxt, act = obs.flip(0), torch.as_tensor(rng.integers(0, ACTIONS, (8, 32)))
    rew = torch.as_tensor(rng.random((8, 32)), dtype=torch.float32)
    times = []
    for i in range(updates + 5):
        c0 = time.process_time()
        with torch.no_grad():
            y = rew[i % 8] + 0.99 * target(nxt[i % 8].float() / 255.0).max(1).values
        pred = q(obs[i % 8].float() / 255.0).gather(1, act[i % 8][:, None]).squeeze(1)
        loss = ((pred - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.process_time() - c0)
    return float(np.median(times[5:])) * 1e3


def agent_ms(algo: str, overrides: dict, updates: int, rng: np.random.Generator) -> float:
    """Median CPU ms of ``agent.update`` on batches drawn as rd2.train.Trainer._learn draws them."""
    overrides = dict(overrides)
    compile_nets = bool(overrides.pop("compile", False))
    acfg = agent_config(algo, "cpu", {"hidden": 512, "buffer_size": 4000, "learning_starts": 0, "batch_size": 32,
                                      "train_freq": 4, **overrides})
    cls = ALGOS[algo][0]
    agent = cls(acfg, OBS, ACTIONS, torch.device("cpu"), num_components=K)
    if compile_nets:
        agent.online.compile()
        agent.target.compile()
    rep = AgentReplay(4000, OBS, 8, acfg.n_step, acfg.gamma, acfg.prioritized, acfg.alpha,
                      num_sub_rewards=K if cls.needs_sub_rewards else 0, sequence=cls.needs_sequence)
    ids = np.arange(8)
    rep.start(ids, rng.integers(0, 255, (8, *OBS), dtype=np.uint8))
    for _ in range(400):
        r = rng.choice(np.array([0.0, 0.0, 0.0, 0.0, 20.0, 100.0], np.float32), size=8)
        sub = np.stack([np.sign(r), np.zeros(8)], 1).astype(np.float32) if cls.needs_sub_rewards else None
        rep.add(ids, rng.integers(0, ACTIONS, 8), r, np.zeros(8, bool), np.zeros(8, bool),
                rng.integers(0, 255, (8, *OBS), dtype=np.uint8), sub)
    batches = []
    for u in range(8):  # 8 batches, reused in turn (u % 8 keeps dec_every = 2, 4, 8 in step)
        agent.prepare(rep)
        b = rep.sample(acfg.batch_size, rng, agent.device, 0.4)
        if agent.needs_reward_batch and agent.wants_reward_batch(u):
            b.extra["dec_obs"], b.extra["dec_reward"] = rep.reward_batch(
                acfg.dec_batch_size, rng, agent.device, **agent.reward_batch_kwargs())
        batches.append(b)
    times = []
    for i in range(updates + 8):
        c0 = time.process_time()
        agent.update(batches[i % 8])
        times.append(time.process_time() - c0)
    return float(np.median(times[8:])) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows", nargs="+", help="reference | algo | algo:{json overrides}")
    p.add_argument("--updates", type=int, default=30, help="timed updates per row")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as rd2.train.Trainer (the reference row runs under it too)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch threads 1", flush=True)
    for row in args.rows:
        algo, _, spec = row.partition(":")
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        ms = reference_ms(args.updates, rng) if algo == "reference" else agent_ms(
            algo, json.loads(spec) if spec else {}, args.updates, rng)
        print(f"{row:100s} {ms:7.1f} CPU ms / update", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
