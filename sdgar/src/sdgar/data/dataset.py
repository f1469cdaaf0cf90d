"""The in-memory dataset: train/test (and optional validation) CSR matrices plus the id maps.

``Dataset.user_ids[u]`` / ``item_ids[i]`` give the original id (as written in the source files) of internal
index u / i, so recommendations are reported in the user's own ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from neurips20_common import UserError

from sdgar.data.split import per_user_split


@dataclass
class Dataset:
    name: str
    train: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    valid: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def info(self) -> dict[str, float | int | str]:
        n_train, n_test = int(self.train.nnz), int(self.test.nnz)
        n_valid = int(self.valid.nnz) if self.valid is not None else 0
        total = n_train + n_test + n_valid
        per_user = np.diff((self.train + self.test).tocsr().indptr)
        return {"name": self.name, "users": self.n_users, "items": self.n_items, "interactions": total,
                "train": n_train, "valid": n_valid, "test": n_test,
                "density": total / max(self.n_users * self.n_items, 1),
                "min_items_per_user": int(per_user.min()) if len(per_user) else 0,
                "median_items_per_user": float(np.median(per_user)) if len(per_user) else 0.0}

    def user_index(self, original: str) -> int:
        """Internal index of a user given by its original id (string compare, so '7' finds 7)."""
        hits = np.flatnonzero(self.user_ids.astype(str) == str(original))
        if len(hits) == 0:
            raise UserError(f"user {original!r} is not in dataset {self.name} "
                            f"({self.n_users} users, e.g. {', '.join(map(str, self.user_ids[:3]))})")
        return int(hits[0])


def csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def binarize(df: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """Keep rows with rating ≥ threshold (SD-GAR's ``r > 3.99``) and drop duplicate (user, item) pairs."""
    if threshold is not None and "rating" in df.columns:
        df = df[df["rating"] >= threshold]
    return df.drop_duplicates(["user", "item"])


def kcore(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Iteratively drop users and items with fewer than k interactions."""
    if k <= 1:
        return df
    while True:
        uc = df["user"].map(df["user"].value_counts())
        ic = df["item"].map(df["item"].value_counts())
        keep = (uc >= k) & (ic >= k)
        if keep.all():
            return df
        df = df[keep]


def from_split(name: str, train: pd.DataFrame, test: pd.DataFrame, threshold: float | None = None) -> Dataset:
    """A dataset whose files are already split, with 0-based integer ids kept as they are (N = max id + 1 over
    train ∪ test, spec 'Porting gotchas'), so results are comparable with the official code."""
    n_users = int(max(train["user"].max(), test["user"].max())) + 1  # over every line of both files
    n_items = int(max(train["item"].max(), test["item"].max())) + 1
    train, test = binarize(train, threshold), binarize(test, threshold)
    for part, df in (("train", train), ("test", test)):
        if len(df) == 0:
            raise UserError(f"dataset {name}: the {part} file has no positive interactions"
                            + (f" (threshold {threshold})" if threshold is not None else ""))
    shape = (n_users, n_items)
    tr = csr(train["user"].to_numpy(np.int64), train["item"].to_numpy(np.int64), shape)
    te = csr(test["user"].to_numpy(np.int64), test["item"].to_numpy(np.int64), shape)
    te = (te - te.multiply(tr)).tocsr()  # an item in both stays in train only
    te.eliminate_zeros()
    return Dataset(name, tr, te, np.arange(n_users), np.arange(n_items))


def from_interactions(name: str, df: pd.DataFrame, threshold: float | None = None, min_count: int = 1,
                      test_frac: float = 0.2, valid_frac: float = 0.0, seed: int = 0) -> Dataset:
    """Binarise, k-core filter, remap ids densely (sorted original ids), then the per-user ⌈20%⌉ split."""
    df = kcore(binarize(df, threshold), min_count)
    if len(df) == 0:
        raise UserError(f"dataset {name}: no interactions left after binarising (threshold {threshold}) "
                        f"and {min_count}-core filtering")
    user_codes, user_ids = pd.factorize(df["user"], sort=True)
    item_codes, item_ids = pd.factorize(df["item"], sort=True)
    users, items = user_codes.astype(np.int64), item_codes.astype(np.int64)
    rng = np.random.default_rng(seed)
    held = per_user_split(users, test_frac, rng)
    shape = (len(user_ids), len(item_ids))
    valid = None
    train_mask = ~held
    if valid_frac > 0:
        idx = np.flatnonzero(train_mask)
        vmask = per_user_split(users[idx], valid_frac, rng)
        valid = csr(users[idx[vmask]], items[idx[vmask]], shape)
        train_mask[idx[vmask]] = False
    return Dataset(name, csr(users[train_mask], items[train_mask], shape), csr(users[held], items[held], shape),
                   np.asarray(user_ids), np.asarray(item_ids), valid)


def with_validation(data: Dataset, valid_frac: float, seed: int) -> Dataset:
    """Move ⌈valid_frac⌉ of each user's training items to a validation split (for pre-split datasets)."""
    if valid_frac <= 0:
        return data
    coo = data.train.tocoo()
    users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    vmask = per_user_split(users, valid_frac, np.random.default_rng(seed))
    shape = data.train.shape
    return Dataset(data.name, csr(users[~vmask], items[~vmask], shape), data.test, data.user_ids, data.item_ids,
                   csr(users[vmask], items[vmask], shape))
