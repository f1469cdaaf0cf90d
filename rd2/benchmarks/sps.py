"""SPS of `rd2 train` against a CleanRL-equivalent reference loop, at the same replay ratio, in one run.

Reference: CleanRL's ``dqn_atari.py`` loop written out plainly (1 env through the gymnasium wrappers of
rd2.envs.atari, the Nature DQN network with a 512-unit layer, a numpy replay of stacked frames, batch 32, one
Adam update every 4 env steps, ε-greedy with one forward per step). Ours: every algorithm through rd2.train.Trainer
with 1 and with N envs, the same batch (32), the same replay ratio (one update per 4 env steps, counted over all
envs), the same network width (hidden 512), the same torch threads. SPS = agent steps per second (× 4 = frames/s)
measured after the warm-up (learning_starts steps without updates are not counted).

    python rd2/benchmarks/sps.py                      # Gopher, 1 and 8 envs, all algorithms, ~10 min on 2 cores
    python rd2/benchmarks/sps.py --steps 64 --warmup 64 --algos dqn,rd2 --envs 1,2   # smoke test

Prints a table and writes it as CSV (``--out``).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ALGOS = ("dqn", "rainbow", "rd2", "drdrl", "hra")


def reference_sps(env_id: str, warmup: int, steps: int, buffer: int, threads: int, seed: int = 0,
                  device: str = "cpu") -> tuple[float, float]:
    """CleanRL dqn_atari's loop (1 env, batch 32, train_frequency 4, target every 1000 steps, MSE, Adam 1e-4).
    Returns (SPS, seconds spent in its gradient updates)."""
    from rd2.envs.atari import make_env

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = make_env(env_id)
    n_actions = int(env.action_space.n)

    def q_net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                             nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
                             nn.Linear(512, n_actions))

    dev = torch.device(device)
    q, target = q_net().to(dev), q_net().to(dev)
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=1e-4)
    obs_buf = np.zeros((buffer, 4, 84, 84), np.uint8)
    next_buf = np.zeros((buffer, 4, 84, 84), np.uint8)
    act_buf = np.zeros(buffer, np.int64)
    rew_buf = np.zeros(buffer, np.float32)
    done_buf = np.zeros(buffer, np.float32)
    obs, _ = env.reset(seed=seed)
    t0 = t_update = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        eps = max(0.01, 1.0 - step / 10_000)
        if rng.random() < eps:
            action = int(rng.integers(n_actions))
        else:
            with torch.no_grad():
                action = int(q(torch.as_tensor(obs[None], device=dev).float() / 255.0).argmax(1))
        next_obs, reward, term, trunc, _ = env.step(action)
        i = step % buffer
        obs_buf[i], next_buf[i], act_buf[i], rew_buf[i], done_buf[i] = obs, next_obs, action, np.sign(reward), term
        obs = next_obs
        if term or trunc:
            obs, _ = env.reset()
        if step >= warmup and step % 4 == 0:
            tu = time.perf_counter()
            idx = rng.integers(0, min(step + 1, buffer), size=32)

            def t(x: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(x, device=dev)

            with torch.no_grad():
                y = t(rew_buf[idx]) + 0.99 * target(t(next_buf[idx]).float() / 255.0).max(1).values * (
                    1 - t(done_buf[idx]))
            pred = q(t(obs_buf[idx]).float() / 255.0).gather(1, t(act_buf[idx])[:, None])
            loss = ((pred.squeeze(1) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            t_update += time.perf_counter() - tu
        if step % 1000 == 0:
            target.load_state_dict(q.state_dict())
    sps = steps / (time.perf_counter() - t0)
    env.close()
    return sps, t_update


def ours_sps(algo: str, env_id: str, num_envs: int, warmup: int, steps: int, buffer: int, threads: int,
             backend: str, compile_nets: bool = False, seed: int = 0, extra: dict | None = None,
             device: str = "cpu") -> float:
    """rd2.train.Trainer: warm-up run (no updates), then the measured run continues the same trainer."""
    from neurips20_common import RunDir

    from rd2.config import TrainConfig, agent_config
    from rd2.train import Trainer

    warmup = -(-warmup // num_envs) * num_envs
    steps = -(-steps // num_envs) * num_envs
    cfg = TrainConfig(env=env_id, algo=algo, preset="cpu", frames=4 * warmup, seed=seed, num_envs=num_envs,
                      backend=backend, eval_every=0, ckpt_every=0, progress=False, threads=threads, device=device,
                      compile=compile_nets, replay_device="cpu" if device == "cpu" else "device")
    acfg = agent_config(algo, "cpu", {"hidden": 512, "buffer_size": buffer, "learning_starts": warmup,
                                      "batch_size": 32, "train_freq": 4, **(extra or {})})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, acfg, RunDir(Path(tmp) / "run"))
        trainer.train()  # warm-up: the replay fills, no update yet
        trainer.total_steps = warmup + steps
        trainer.envs = type(trainer.envs)(cfg)  # train() closed the envs
        summary = trainer.train()
    return float(summary["sps"])


def dtype_label(extra: dict) -> str:
    """Which parts of the network run in bf16: float32, "bf16 torso" or "bf16 torso+heads"."""
    torso, head = extra.get("torso_dtype") == "bfloat16", extra.get("head_dtype") == "bfloat16"
    return "bf16 torso+heads" if torso and head else "bf16 torso" if torso else "bf16 heads" if head else "float32"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Gopher")
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--envs", default="1,8", help="num_envs values for our trainer")
    p.add_argument("--warmup", type=int, default=1000, help="agent steps before the first update (not timed)")
    p.add_argument("--steps", type=int, default=800, help="timed agent steps (with updates)")
    p.add_argument("--buffer", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1, help="torch threads, the same for every row")
    p.add_argument("--backend", default="auto", help="our Atari env backend: auto (native ale), ale, python")
    p.add_argument("--device", default="cpu", help="cpu or cuda (replay frames on the device for ours)")
    p.add_argument("--compile", action="store_true", help="also rows with torch.compile'd networks (dqn, rd2)")
    p.add_argument("--no-bf16", action="store_true", help="skip the rows with torso_dtype / head_dtype bfloat16")
    p.add_argument("--out", default="rd2/benchmarks/results/sps.csv")
    args = p.parse_args()
    rows = []
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; torch threads {args.threads}; "
          f"{os.cpu_count()} CPUs; device {args.device}; env {args.env}; batch 32, 1 update / 4 env steps, hidden 512",
          flush=True)
    ref, t_update = reference_sps(args.env, args.warmup, args.steps, args.buffer, args.threads, device=args.device)
    rows.append({"loop": "reference (CleanRL dqn_atari)", "algo": "dqn", "num_envs": 1, "sps": ref,
                 "dtype": "float32"})
    share = t_update * ref / args.steps
    print(f"{'reference (CleanRL dqn_atari)':32s} envs 1: {ref:7.1f} SPS; its updates take {100 * share:.0f}% of "
          f"its time: with the same updates no loop exceeds {args.steps / t_update:.0f} SPS "
          f"({1 / share:.2f}x) at this replay ratio", flush=True)
    most = max(map(int, args.envs.split(",")))
    variants = [(a, n, False, {}) for a in args.algos.split(",") for n in map(int, args.envs.split(","))]
    if "rd2" in args.algos.split(","):  # the faster RD² target (r̂ = 0 on zero-reward steps, see rd2.agents.rd2)
        variants.append(("rd2", most, False, {"window_rewards": "nonzero"}))
    if not args.no_bf16:  # the conv torso in bf16 (AgentConfig.torso_dtype; heads, losses and Adam stay float32)
        bf16, bf16_all = {"torso_dtype": "bfloat16"}, {"torso_dtype": "bfloat16", "head_dtype": "bfloat16"}
        variants += [(a, most, False, bf16) for a in ("dqn", "rd2") if a in args.algos]
        # and the heads' 3136-wide first layers (AgentConfig.head_dtype)
        variants += [(a, most, False, bf16_all) for a in ("dqn", "rd2") if a in args.algos]
        if "rd2" in args.algos.split(","):
            variants.append(("rd2", most, False, {**bf16, "window_rewards": "nonzero"}))
            # every RD² speed option at once: bf16, the nonzero window, L_dec on every 4th update (RD2Config)
            variants.append(("rd2", most, False, {**bf16_all, "window_rewards": "nonzero", "dec_every": 4}))
    if args.compile:
        variants += [(a, most, True, {}) for a in ("dqn", "rd2")]
    for algo, n, comp, extra in variants:
        sps = ours_sps(algo, args.env, n, args.warmup, args.steps, args.buffer, args.threads, args.backend, comp,
                       extra=extra, device=args.device)
        name = "rd2 train" + (" (compiled)" if comp else "") + "".join(f" {k}={v}" for k, v in extra.items())
        rows.append({"loop": name, "algo": algo, "num_envs": n, "sps": sps, "dtype": dtype_label(extra)})
        print(f"{name + ' ' + algo:32s} envs {n}: {sps:7.1f} SPS  ({sps / ref:4.2f}x reference)", flush=True)
    # rd2.train.Trainer keeps freed memory (rd2.train.keep_freed_memory, process-wide, set by the rows above): the
    # reference again under that allocator setting shows how much of the gap is the allocator alone
    ref_kept, _ = reference_sps(args.env, args.warmup, args.steps, args.buffer, args.threads, device=args.device)
    rows.append({"loop": "reference, freed memory kept", "algo": "dqn", "num_envs": 1, "sps": ref_kept,
                 "dtype": "float32"})
    print(f"{'reference, freed memory kept':32s} envs 1: {ref_kept:7.1f} SPS  ({ref_kept / ref:4.2f}x reference)",
          flush=True)
    # our DQN at the same num_envs and dtypes (bf16 rows are compared with the DQN of the same bf16 setting)
    dqn = {(r["num_envs"], r["dtype"]): r["sps"] for r in rows
           if r["algo"] == "dqn" and r["loop"].startswith("rd2 train") and "compiled" not in r["loop"]}
    rainbow = {r["num_envs"]: r["sps"] for r in rows if r["algo"] == "rainbow" and r["loop"] == "rd2 train"}
    for r in rows:
        r["x_reference"] = r["sps"] / ref
        base = dqn.get((r["num_envs"], r["dtype"]))
        ours = not r["loop"].startswith("reference")
        r["time_per_frame_vs_dqn"] = base / r["sps"] if base and ours else ""
        r["time_per_frame_vs_rainbow"] = (rainbow[r["num_envs"]] / r["sps"] if r["num_envs"] in rainbow and ours
                                          and r["dtype"] == "float32" else "")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("\ntime per frame relative to our DQN at the same num_envs and dtypes (and to Rainbow, float32):")
    for r in rows:
        if r["time_per_frame_vs_dqn"] != "":
            vs_rb = r["time_per_frame_vs_rainbow"]
            print(f"  {r['loop'][9:] + ' ' + r['algo']:34s} envs {r['num_envs']}: {r['time_per_frame_vs_dqn']:.2f}x DQN"
                  + (f", {vs_rb:.2f}x Rainbow" if vs_rb != "" else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
