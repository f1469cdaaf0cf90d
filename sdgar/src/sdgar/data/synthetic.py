"""Synthetic implicit feedback with a low-rank ground truth (spec §6 G0), byte-identical for a seed.

Users and items get latent vectors U, V ~ N(0, 1/r); items get a Zipf popularity; user activity n_u is
lognormal, clipped to ≥ ``min_per_user`` and rescaled to the requested total. Each user's items are drawn without
replacement by Gumbel-top-n_u over (U_u · V_i)/τ − zipf · log(popularity rank_i), chunked over users.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

SIZES: dict[str, tuple[int, int, int]] = {  # users, items, interactions
    "tiny": (300, 400, 9_000),
    "demo": (3_000, 2_000, 90_000),
    "citeulike": (7_947, 25_584, 134_860),
    "gowalla": (29_858, 40_988, 1_027_464),
}


@dataclass(frozen=True)
class SyntheticSpec:
    n_users: int = 3_000
    n_items: int = 2_000
    n_interactions: int = 90_000
    rank: int = 16  # r of the ground truth
    temperature: float = 0.1  # τ: smaller = users follow their taste more strictly
    zipf: float = 1.0  # exponent of the item popularity
    min_per_user: int = 10
    seed: int = 0

    @classmethod
    def preset(cls, size: str, seed: int = 0, **overrides: int | float) -> SyntheticSpec:
        if size not in SIZES:
            raise ValueError(f"unknown synthetic size {size!r}; known: {', '.join(SIZES)}")
        u, i, n = SIZES[size]
        return replace(cls(n_users=u, n_items=i, n_interactions=n, seed=seed), **overrides)


def generate(spec: SyntheticSpec, chunk: int = 512) -> pd.DataFrame:
    """(user, item) pairs of the synthetic dataset (no duplicates; ids 0-based)."""
    if spec.min_per_user * spec.n_users > spec.n_interactions or spec.n_interactions > spec.n_users * spec.n_items:
        raise ValueError(f"cannot draw {spec.n_interactions} interactions for {spec.n_users} users × "
                         f"{spec.n_items} items with at least {spec.min_per_user} per user")
    rng = np.random.default_rng(spec.seed)
    u_vec = rng.normal(0.0, 1.0 / np.sqrt(spec.rank), (spec.n_users, spec.rank))
    v_vec = rng.normal(0.0, 1.0 / np.sqrt(spec.rank), (spec.n_items, spec.rank))
    popularity = -spec.zipf * np.log1p(rng.permutation(spec.n_items)).astype(np.float64)
    cap = max(spec.min_per_user, spec.n_items // 2)
    raw = rng.lognormal(0.0, 1.0, spec.n_users)
    n_u = np.clip(raw * spec.n_interactions / raw.sum(), spec.min_per_user, cap)
    for _ in range(20):  # rescale the unclipped part until the total matches
        free = (n_u > spec.min_per_user) & (n_u < cap)
        missing = spec.n_interactions - n_u.sum()
        if abs(missing) < 1 or not free.any():
            break
        n_u[free] *= 1 + missing / n_u[free].sum()
        n_u = np.clip(n_u, spec.min_per_user, cap)
    n_u = np.floor(n_u).astype(np.int64)
    short = spec.n_interactions - int(n_u.sum())  # flooring lost a few: give them to the first users
    if short > 0:
        n_u[:short] += 1
    users, items = [], []
    for s in range(0, spec.n_users, chunk):
        e = min(s + chunk, spec.n_users)
        logits = (u_vec[s:e] @ v_vec.T) / spec.temperature + popularity
        g = rng.random((e - s, spec.n_items), dtype=np.float32)
        logits -= np.log(-np.log(np.maximum(g, 1e-12)))  # + Gumbel noise
        kmax = int(n_u[s:e].max())
        top = np.argpartition(-logits, kmax - 1, axis=1)[:, :kmax]
        top_val = np.take_along_axis(logits, top, 1)
        top = np.take_along_axis(top, np.argsort(-top_val, axis=1, kind="stable"), 1)
        keep = np.arange(kmax)[None, :] < n_u[s:e, None]
        users.append(np.repeat(np.arange(s, e), keep.sum(1)))
        items.append(top[keep])
    return pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items)})
