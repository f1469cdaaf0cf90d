"""Per-user split (spec §3.1): test = ⌈frac · n_u⌉ of each user's items, the rest train.

Random by default; with ``order`` (timestamps) the held-out items are each user's latest (a temporal split), and
``frac=None`` holds out exactly one (leave-last-out; a user with one item keeps it in train).
Vectorised: one random key per interaction, a stable sort by (user, key), and the rank within the user.
"""

from __future__ import annotations

import numpy as np


def per_user_split(users: np.ndarray, frac: float | None, rng: np.random.Generator, rounding: str = "ceil",
                   order: np.ndarray | None = None, keep_one: bool = False) -> np.ndarray:
    """Boolean mask of the interactions that go to the held-out part (⌈frac·n_u⌉ per user by default).

    ``keep_one`` leaves every user at least one item (validation splits: a user's last training item stays).
    """
    if frac is not None and not 0.0 <= frac < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {frac}")
    users = np.asarray(users)
    n = len(users)
    keys = rng.random(n)
    sort_keys = (keys, users) if order is None else (keys, -np.asarray(order, dtype=np.float64), users)
    order = np.lexsort(sort_keys)  # within a user: random, or latest first (ties at random)
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)
    if frac is None:  # leave-last-out
        n_held = np.repeat((counts >= 2).astype(np.int64), counts)
        mask = np.zeros(n, dtype=bool)
        mask[order] = rank < n_held
        return mask
    want = frac * counts
    if rounding == "ceil":
        held = np.ceil(want - 1e-9)  # 0.2 * 15 = 3.0000000000000004 must give 3
    elif rounding == "floor":
        held = np.floor(want + 1e-9)
    else:
        held = np.round(want)
    if keep_one:
        held = np.minimum(held, counts - 1)
    n_held = np.repeat(held.astype(np.int64), counts)
    mask = np.zeros(n, dtype=bool)
    mask[order] = rank < n_held
    return mask
