"""`rd2 plot RUN...`: learning curves of several runs on one figure (episodic raw return vs frames, smoothed, and
the periodic evaluation returns when the runs have eval.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from neurips20_common import UserError


def _progress_file(run: str | Path) -> Path:
    p = Path(run)
    if p.is_dir():
        p = p / "progress.csv"
    if not p.is_file():
        raise UserError(f"{run}: no progress.csv (pass run directories written by `rd2 train`)")
    return p


def plot_runs(runs: list[str | Path], out: str | Path, metric: str = "return_raw", smooth: int = 10,
              labels: list[str] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [_progress_file(r) for r in runs]
    evals = [f.parent / "eval.csv" for f in files]
    has_eval = any(e.is_file() and e.stat().st_size > 0 for e in evals)
    fig, axes = plt.subplots(1, 2 if has_eval else 1, figsize=(11 if has_eval else 6, 4), squeeze=False)
    for i, (f, e) in enumerate(zip(files, evals, strict=True)):
        label = labels[i] if labels and i < len(labels) else f.parent.name
        try:
            df = pd.read_csv(f)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise UserError(f"{f} is not a readable CSV ({exc})") from None
        if metric not in df.columns:
            raise UserError(f"{f} has no column {metric!r}; columns: {', '.join(df.columns)}")
        y = df[metric].rolling(max(1, smooth), min_periods=1).mean()
        axes[0, 0].plot(df["frames"], y, label=label, color=f"C{i}")
        if has_eval and e.is_file() and e.stat().st_size > 0:
            ev = pd.read_csv(e)
            col = f"{metric}_mean"
            if col in ev.columns:
                axes[0, 1].errorbar(ev["frames"], ev[col], yerr=ev.get(f"{metric}_std"), label=label,
                                    color=f"C{i}", marker="o", ms=3, capsize=2)
    axes[0, 0].set_title(f"training episodes ({metric}, mean of {smooth})", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("frames")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if has_eval:
        axes[0, 1].set_title("evaluation (greedy)", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def final_returns(runs: list[str | Path], last: int = 10, metric: str = "return_raw") -> list[tuple[str, float]]:
    """Mean of the last ``last`` training episodes per run (for the printed summary)."""
    out = []
    for r in runs:
        df = pd.read_csv(_progress_file(r))
        out.append((str(r), float(np.mean(df[metric].tail(last))) if len(df) else float("nan")))
    return out
