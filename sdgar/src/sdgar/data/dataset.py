"""The in-memory dataset: train/test (and optional validation) CSR matrices plus the id maps.

``Dataset.user_ids[u]`` / ``item_ids[i]`` give the original id (as written in the source files) of internal
index u / i, so recommendations are reported in the user's own ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    report: list[str] = field(default_factory=list)  # what was detected / dropped / remapped, for the user

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


def _id_maps(train: pd.DataFrame, test: pd.DataFrame, col: str, kind: str, sources: tuple[Path, Path] | None,
             report: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """0-based integer ids of a ready split are kept as they are (N = max id + 1 over train ∪ test, spec 'Porting
    gotchas'), so results match the official code. Negative ids are refused; ids far larger than the number of
    distinct ids (1e12 on a 100-line file) are remapped densely instead of sizing the model from them."""
    both = np.concatenate([train[col].to_numpy(), test[col].to_numpy()])
    if not np.issubdtype(both.dtype, np.integer):
        raise UserError(f"{kind} ids of a ready split must be integers, got {both.dtype}")
    if len(both) and both.min() < 0:
        neg = both.min()
        src = ""
        if sources is not None:
            part = 0 if len(train) and train[col].to_numpy().min() == neg else 1
            src = f"{_locate(sources[part], neg)}: "
        raise UserError(f"{src}negative {kind} id {neg}; ids of a ready split must be 0-based integers "
                        "(fix that line, or give a raw file to have ids remapped)")
    distinct = np.unique(both)
    top = int(both.max()) + 1 if len(both) else 0
    if top <= max(2 * len(distinct), len(distinct) + 1024):
        return train[col].to_numpy(np.int64), test[col].to_numpy(np.int64), np.arange(top), top
    where = ""
    if sources is not None:
        part = 0 if len(train) and train[col].to_numpy().max() == both.max() else 1
        where = f" ({_locate(sources[part], both.max())})"
    report.append(f"{kind} id {int(both.max())}{where} is far above the {len(distinct)} distinct {kind} ids: "
                  f"{kind} ids were remapped to 0..{len(distinct) - 1} (original ids kept for output)")
    codes = np.searchsorted(distinct, both)
    return codes[:len(train)], codes[len(train):], distinct, len(distinct)


def _locate(path: Path, value: object) -> str:
    """'FILE, line N' of the first line holding ``value`` as a field (for messages only)."""
    token = str(value)
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for no, line in enumerate(fh, 1):
                if token in line.replace(",", " ").split():
                    return f"{path}, line {no}"
    except OSError:
        pass
    return str(path)


def from_split(name: str, train: pd.DataFrame, test: pd.DataFrame, threshold: float | None = None,
               sources: tuple[Path, Path] | None = None) -> Dataset:
    """A dataset whose files are already split, with 0-based integer ids kept as they are (see :func:`_id_maps`).
    ``sources`` (train, test file) name the line of a bad id in messages."""
    report: list[str] = []
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    tr_u, te_u, user_ids, n_users = _id_maps(train, test, "user", "user", sources, report)
    tr_i, te_i, item_ids, n_items = _id_maps(train, test, "item", "item", sources, report)
    train = train.assign(user=tr_u, item=tr_i)
    test = test.assign(user=te_u, item=te_i)
    n_tr, n_te = len(train), len(test)
    train, test = binarize(train, threshold), binarize(test, threshold)
    for part, df in (("train", train), ("test", test)):
        if len(df) == 0:
            raise UserError(f"dataset {name}: the {part} file has no positive interactions"
                            + (f" (threshold {threshold})" if threshold is not None else ""))
    if threshold is not None:
        report.append(f"kept {len(train)} of {n_tr} train and {len(test)} of {n_te} test lines with score ≥ "
                      f"{threshold} (duplicates removed)")
    shape = (n_users, n_items)
    tr = csr(train["user"].to_numpy(np.int64), train["item"].to_numpy(np.int64), shape)
    te = csr(test["user"].to_numpy(np.int64), test["item"].to_numpy(np.int64), shape)
    overlap = te.multiply(tr)
    if overlap.nnz:
        report.append(f"{overlap.nnz} test pairs are also in train: kept in train only")
    te = (te - overlap).tocsr()  # an item in both stays in train only
    te.eliminate_zeros()
    data = Dataset(name, tr, te, np.asarray(user_ids), np.asarray(item_ids), report=report)
    report.extend(unseen_warnings(data))
    return data


def unseen_warnings(data: Dataset) -> list[str]:
    """Warnings for test items / users that never occur in train (they cannot be ranked above chance)."""
    out = []
    item_seen = np.diff(data.train.tocsc().indptr) > 0
    te = data.test.tocoo()
    unseen = ~item_seen[te.col]
    if unseen.any():
        out.append(f"warning: {int(unseen.sum())} of {te.nnz} test interactions are on {len(np.unique(te.col[unseen]))}"
                   " items never seen in train (no model can rank them above chance)")
    user_seen = np.diff(data.train.indptr) > 0
    cold = np.flatnonzero((np.diff(data.test.indptr) > 0) & ~user_seen)
    if len(cold):
        out.append(f"warning: {len(cold)} test users have no train interactions (their rankings are untrained)")
    return out


def from_matrix(name: str, user_items: sp.spmatrix, user_ids: np.ndarray | None = None,
                item_ids: np.ndarray | None = None) -> Dataset:
    """A users × items matrix (any nonzero is a positive) as a dataset with an empty test split."""
    if not sp.issparse(user_items):
        raise UserError(f"expected a scipy.sparse users × items matrix, got {type(user_items).__name__}")
    m = sp.csr_matrix(user_items, copy=True)
    if m.nnz and not np.isfinite(m.data).all():
        raise UserError(f"the matrix holds {int((~np.isfinite(m.data)).sum())} NaN/inf values; drop them first")
    m.eliminate_zeros()
    coo = m.tocoo()
    shape = m.shape
    train = csr(coo.row.astype(np.int64), coo.col.astype(np.int64), shape)
    test = sp.csr_matrix(shape, dtype=np.float32)
    return Dataset(name, train, test, np.arange(shape[0]) if user_ids is None else np.asarray(user_ids),
                   np.arange(shape[1]) if item_ids is None else np.asarray(item_ids))


def from_interactions(name: str, df: pd.DataFrame, threshold: float | None = None, min_count: int = 1,
                      test_frac: float = 0.2, valid_frac: float = 0.0, seed: int = 0,
                      split: str = "random") -> Dataset:
    """Binarise, k-core filter, remap ids densely (sorted original ids), then the per-user ⌈20%⌉ split.

    ``split``: ``random`` (spec §3.1), ``temporal`` (each user's latest ⌈frac⌉ by timestamp) or ``leave_last``
    (each user's latest item to test, the one before to validation); the last two need a ``timestamp`` column.
    """
    report: list[str] = []
    n0 = len(df)
    rated = df[df["rating"] >= threshold] if threshold is not None and "rating" in df.columns else df
    if len(rated) != n0:
        report.append(f"rating ≥ {threshold} kept {len(rated)} of {n0} rows ({n0 - len(rated)} dropped)")
    deduped = rated.drop_duplicates(["user", "item"])
    if len(deduped) != len(rated):
        report.append(f"{len(rated) - len(deduped)} duplicate (user, item) rows dropped")
    df = kcore(deduped, min_count)
    if len(df) != len(deduped):
        report.append(f"{min_count}-core filter dropped {len(deduped) - len(df)} rows")
    if len(df) == 0:
        raise UserError(f"dataset {name}: no interactions left after binarising (threshold {threshold}) "
                        f"and {min_count}-core filtering")
    user_codes, user_ids = pd.factorize(df["user"], sort=True)
    item_codes, item_ids = pd.factorize(df["item"], sort=True)
    users, items = user_codes.astype(np.int64), item_codes.astype(np.int64)
    rng = np.random.default_rng(seed)
    if split != "random" and "timestamp" not in df.columns:
        raise UserError(f"dataset {name}: split {split!r} needs timestamps, and this data has none "
                        "(name the column with --timestamp-col, or use --split random)")
    when = df["timestamp"].to_numpy(np.float64) if split != "random" else None
    frac = {"random": test_frac, "temporal": test_frac, "leave_last": None}[split]
    held = per_user_split(users, frac, rng, order=when)
    shape = (len(user_ids), len(item_ids))
    valid = None
    train_mask = ~held
    if valid_frac > 0:
        idx = np.flatnonzero(train_mask)
        vfrac = valid_frac if split != "leave_last" else None
        vmask = per_user_split(users[idx], vfrac, rng, order=None if when is None else when[idx], keep_one=True)
        if vmask.any():
            valid = csr(users[idx[vmask]], items[idx[vmask]], shape)
            train_mask[idx[vmask]] = False
        else:
            report.append(NO_VALID)
    report.append(f"{split} per-user split: {int(train_mask.sum())} train / "
                  f"{0 if valid is None else valid.nnz} valid / {int(held.sum())} test")
    data = Dataset(name, csr(users[train_mask], items[train_mask], shape), csr(users[held], items[held], shape),
                   np.asarray(user_ids), np.asarray(item_ids), valid, report)
    report.extend(unseen_warnings(data))
    return data


NO_VALID = ("warning: no user has a training item to spare for validation; the best checkpoint is chosen on test "
            "(the official protocol)")


def with_validation(data: Dataset, valid_frac: float, seed: int) -> Dataset:
    """Move ⌈valid_frac⌉ of each user's training items to a validation split (for pre-split datasets)."""
    if valid_frac <= 0:
        return data
    coo = data.train.tocoo()
    users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    vmask = per_user_split(users, valid_frac, np.random.default_rng(seed), keep_one=True)
    if not vmask.any():
        data.report.append(NO_VALID)
        return data
    shape = data.train.shape
    return Dataset(data.name, csr(users[~vmask], items[~vmask], shape), data.test, data.user_ids, data.item_ids,
                   csr(users[vmask], items[vmask], shape), data.report)
