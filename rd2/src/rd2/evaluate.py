"""`rd2 evaluate` and the agents' library entry point.

:func:`load_agent` rebuilds an agent from a checkpoint of `rd2 train` (or the run dir that holds it):
``load_agent("runs/rd2-Gopher-s0").act(obs)`` gives the greedy action for one observation (or a batch).
:func:`run_episodes` plays greedy episodes and reports total and per-component returns (true channels: toy
sub-rewards / Atari raw-reward sources; learned channels: Σ_t r̂_k of RD²); :func:`evaluate_checkpoint` writes a CSV
with one row per episode, a summary and a bar plot.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from neurips20_common import UserError, load_checkpoint, select_device
from neurips20_common.cli import resolve_checkpoint

from rd2.agents import ALGOS, Agent
from rd2.agents.base import config_from_dict
from rd2.config import TrainConfig
from rd2.envs.agent_envs import AgentEnvs, resolve_backend, true_channels


def build_agent(cfg: TrainConfig, acfg: Any, obs_shape: tuple[int, ...], n_actions: int,
                device: torch.device) -> Agent:
    cls = ALGOS[cfg.algo][0]
    k = len(true_channels(cfg).names) if cls.needs_sub_rewards else cfg.num_components
    if cls.needs_sub_rewards and k == 0:
        raise UserError(f"--algo {cfg.algo} needs a given reward decomposition: the toy game's true sub-rewards "
                        "or a game with known raw-reward sources (Pong, Gopher, UpNDown, MsPacman)")
    return cls(acfg, obs_shape, n_actions, device, num_components=k)


def legacy_agent_config(algo: str, values: dict[str, Any]) -> dict[str, Any]:
    """Fields that runs written before issue 19 do not record take the value those runs used (their RD² had K
    full-width sub-Q heads and learned from the clipped reward), not today's default."""
    values = dict(values)
    if algo == "rd2":
        values.setdefault("q_hidden", values.get("hidden", 512))
        values.setdefault("reward_target", "clipped")
    return values


def load_agent(path: str | Path, device: str = "auto") -> Agent:
    """The agent of a `rd2 train` checkpoint (a file, or a run dir → its newest checkpoint), in eval mode (noisy
    layers act with their mean weights). ``agent.train_config`` is the run's TrainConfig, ``agent.step`` the
    agent steps it was trained for; ``agent.act(obs)`` is greedy."""
    ckpt = resolve_checkpoint(path, prefer="latest")
    dev = select_device(device)
    state = load_checkpoint(ckpt, map_location="cpu")
    if "train_config" not in state or "agent" not in state:
        raise UserError(f"{ckpt} is not an `rd2 train` checkpoint (no agent inside); pass a run dir of `rd2 train` "
                        "or a file from its checkpoints/")
    cfg = config_from_dict(TrainConfig, state["train_config"])
    acfg = config_from_dict(ALGOS[cfg.algo][1], legacy_agent_config(cfg.algo, state["agent_config"]))
    agent = ALGOS[cfg.algo][0](acfg, tuple(state["obs_shape"]), int(state["n_actions"]), dev,
                               num_components=int(state["num_components"]))
    agent.load_state_dict(state["agent"])
    agent.online.eval()
    agent.train_config, agent.step = cfg, int(state["counters"]["step"])
    agent.checkpoint = ckpt
    return agent


def run_episodes(agent: Agent, cfg: TrainConfig, episodes: int, epsilon: float, seed: int,
                 on_step: Any = None) -> list[dict[str, float]]:
    """Play ``episodes`` episodes greedily (ε = ``epsilon``, noisy layers off); total, clipped and per-component
    returns (true channels on the toy game / Atari, learned sub-rewards Σ_t r̂_k for agents that have them)."""
    # one env of the backend the agent was trained with (the same preprocessing code)
    envs = AgentEnvs(dataclasses.replace(cfg, num_envs=1, seed=seed, backend=resolve_backend(cfg)))
    rng = np.random.default_rng(seed)
    channels = true_channels(cfg)
    was_training = agent.online.training
    agent.online.eval()
    rows = []
    try:
        for ep in range(episodes):
            obs = envs.reset(np.array([0]))
            row: dict[str, float] = {"episode": ep, "return_raw": 0.0, "return_clipped": 0.0, "length": 0}
            done = False
            while not done:
                action, _ = agent.select_actions(obs, epsilon, rng)
                res = envs.step(action)
                r = float(res.reward[0])
                row["return_raw"] += r
                row["return_clipped"] += float(np.sign(r))
                row["length"] += 1
                for name, v in zip(channels.names, channels.split(res.reward, res.infos)[0], strict=True):
                    row[f"ret_{name}"] = row.get(f"ret_{name}", 0.0) + float(v)
                hat = agent.learned_sub_rewards(obs, action, res.next_obs)
                if hat is not None:
                    for k, v in enumerate(hat[0]):
                        row[f"ret_hat{k}"] = row.get(f"ret_hat{k}", 0.0) + float(v)
                if on_step is not None:
                    on_step(obs[0], int(action[0]), r)
                obs, done = res.next_obs, bool(res.terminated[0] or res.truncated[0])
            rows.append(row)
    finally:
        agent.online.train(was_training)
        envs.close()
    return rows


def evaluate_checkpoint(ckpt: str | Path, episodes: int = 10, out_dir: str | Path | None = None,
                        epsilon: float | None = None, seed: int = 12345, sticky: float | None = None,
                        device: str = "auto") -> dict[str, Any]:
    if episodes <= 0:
        raise UserError(f"--episodes must be a positive integer, got {episodes}")
    agent = load_agent(ckpt, device)
    cfg = agent.train_config
    if sticky is not None:
        cfg.sticky = sticky
    eps = agent.cfg.eps_eval if epsilon is None else epsilon
    rows = run_episodes(agent, cfg, episodes, eps, seed)
    ckpt = agent.checkpoint
    out = Path(out_dir) if out_dir else ckpt.parent.parent / f"eval-{agent.step:09d}"
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (out / "episodes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    summary: dict[str, Any] = {"checkpoint": str(ckpt), "algo": cfg.algo, "env": cfg.env,
                               "step": agent.step, "episodes": episodes, "epsilon": eps}
    for k in keys:
        if k != "episode":
            vals = np.array([r.get(k, 0.0) for r in rows], np.float64)
            summary[f"{k}_mean"], summary[f"{k}_std"] = float(vals.mean()), float(vals.std())
    with (out / "summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(summary))
        writer.writeheader()
        writer.writerow(summary)
    _plot(rows, keys, out / "returns.png", f"{cfg.algo} on {cfg.env}, step {summary['step']}")
    summary["out_dir"] = str(out)
    return summary


def _plot(rows: list[dict], keys: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["return_raw"] + [k for k in keys if k.startswith("ret_")]
    means = [np.mean([r.get(k, 0.0) for r in rows]) for k in cols]
    stds = [np.std([r.get(k, 0.0) for r in rows]) for k in cols]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cols), 3.6))
    colors = ["0.3"] + [f"C{i}" for i in range(len(cols) - 1)]
    ax.bar(range(len(cols)), means, yerr=stds, color=colors, capsize=4)
    for i, k in enumerate(cols):
        ax.scatter(np.full(len(rows), i) + np.linspace(-0.2, 0.2, len(rows)), [r.get(k, 0.0) for r in rows],
                   s=8, color="k", zorder=3)
    labels = ["total" if k == "return_raw" else k.removeprefix("ret_").replace("hat", "learned r̂") for k in cols]
    ax.set_xticks(range(len(cols)), labels, rotation=20, ha="right")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("episode return")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
