"""`rd2 evaluate`: play a checkpointed agent greedily and report total and per-component returns
(true channels: toy sub-rewards / Atari raw-reward sources; learned channels: Σ_t r̂_k of RD²). Writes a CSV with one
row per episode, a summary and a bar plot."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from rd2.train import load_agent, run_episodes


def evaluate_checkpoint(ckpt: str | Path, episodes: int = 10, out_dir: str | Path | None = None,
                        epsilon: float | None = None, seed: int = 12345, sticky: float | None = None,
                        device: str = "auto") -> dict[str, Any]:
    agent, cfg, state = load_agent(ckpt, device)
    if sticky is not None:
        cfg.sticky = sticky
    eps = agent.cfg.eps_eval if epsilon is None else epsilon
    rows = run_episodes(agent, cfg, episodes, eps, seed)
    ckpt = Path(ckpt)
    out = Path(out_dir) if out_dir else ckpt.parent.parent / f"eval-{int(state.get('step', 0)):09d}"
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (out / "episodes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    summary: dict[str, Any] = {"checkpoint": str(ckpt), "algo": cfg.algo, "env": cfg.env,
                               "step": int(state.get("step", 0)), "episodes": episodes, "epsilon": eps}
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
