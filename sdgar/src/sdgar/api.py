"""Python API in the shape ``implicit`` users know (issue 16).

    from sdgar import SDGAR
    model = SDGAR(factors=128, negatives=50, iterations=35)
    model.fit(user_items)                       # scipy.sparse users × items, or a DataFrame with user/item columns
    ids, scores = model.recommend(0, user_items[0], N=10, filter_already_liked_items=True)
    ids, scores = model.similar_items(3, N=5)
    model.save("sdgar.pt"); model = sdgar.load("sdgar.pt")   # also loads `sdgar train` checkpoints and run dirs
    model.export("sdgar")                       # sdgar.safetensors (factors) + sdgar.json (config, ids, versions)

Ids: ``recommend`` / ``similar_items`` take and return the ids of the data the model was fitted on: row and column
indices for a matrix, the original ids for a DataFrame or a training file (kept in the checkpoint).

Every model trains through the same trainer as ``sdgar train`` (:func:`sdgar.run.run_training`), in a temporary
run dir unless ``fit(..., run_dir=...)`` names one; its parameters are the model's config fields (the ``--set
model.KEY`` names), plus the ``implicit`` names ``factors``, ``negatives``, ``regularization``, ``iterations``,
``learning_rate``, ``random_state`` and ``num_threads``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from neurips20_common import UserError, load_checkpoint, save_checkpoint, select_device
from neurips20_common.cli import resolve_checkpoint, write_out

from sdgar.config import RunConfig, make_config
from sdgar.data.dataset import Dataset, from_matrix, with_validation
from sdgar.models.base import Recommender
from sdgar.run import ARTIFACT, artifact, dataset_from_artifact, read_artifact, run_training, versions

# implicit's parameter names -> the config field each model calls it (first one present wins)
ALIASES: dict[str, tuple[str, ...]] = {
    "factors": ("dis_emb_dim", "factors", "dim"),
    "negatives": ("dis_sample_num", "neg_samples", "negatives"),
    "regularization": ("dis_lambda", "reg", "d_lambda"),
}
TRAIN_KEYS = {"iterations": "epochs", "epochs": "epochs", "eval_every": "eval_every", "random_state": "seed",
              "seed": "seed", "num_threads": "threads", "threads": "threads", "device": "device",
              "precision": "precision", "patience": "patience"}


class Model:
    """Base of the API classes; a subclass sets ``model_name`` (a name of :mod:`sdgar.models.registry`)."""

    model_name: ClassVar[str] = ""

    def __init__(self, factors: int | None = None, *, preset: str | None = None, valid_frac: float = 0.0,
                 **params: Any) -> None:
        if factors is not None:
            params["factors"] = factors
        self.preset, self.valid_frac = preset, valid_frac
        self.config = self._config(params)
        self.model: Recommender | None = None  # the trained torch module (eval mode)
        self.user_ids = self.item_ids = None
        self.train_matrix: sp.csr_matrix | None = None  # the fitted interactions (filter_already_liked_items)
        self.device = torch.device("cpu")
        self.summary: dict[str, Any] = {}
        self.dataset: Dataset | None = None  # the data of a loaded checkpoint (train / valid / test splits)

    def _config(self, params: dict[str, Any]) -> RunConfig:
        from sdgar.models.registry import get_model

        fields = {f.name for f in dataclasses.fields(get_model(self.model_name)[1])}
        model_over: dict[str, Any] = {}
        train_over: dict[str, Any] = {"device": "auto"}
        for key, value in params.items():
            if key in TRAIN_KEYS:
                train_over[TRAIN_KEYS[key]] = value
            elif key in ALIASES:
                target = next((f for f in ALIASES[key] if f in fields), None)
                if target is None:
                    raise UserError(f"{type(self).__name__} has no {key!r} parameter")
                model_over[target] = value
            elif key in fields:
                model_over[key] = value
            else:
                raise UserError(f"{type(self).__name__}: unknown parameter {key!r}; known: "
                                f"{', '.join(sorted({*fields, *ALIASES, *TRAIN_KEYS}))}")
        data = {"data": "python", "valid_frac": self.valid_frac}
        config = make_config(self.model_name, self.preset, data, train_over, model_over)
        if "eval_every" not in train_over and not self.valid_frac:
            config.train.eval_every = config.train.epochs  # nothing to evaluate on: once, at the end
        from sdgar.run import validate

        validate(config)
        return config

    # ------------------------------------------------------------------------------------------------ fit

    def fit(self, user_items: sp.spmatrix | pd.DataFrame, show_progress: bool = True, *, user_col: str = "user",
            item_col: str = "item", run_dir: str | os.PathLike | None = None) -> Model:
        """Train on a users × items matrix (any nonzero is a positive) or a DataFrame with ``user_col`` and
        ``item_col`` (original ids, any type). With ``valid_frac`` the checkpoint with the best validation
        NDCG@50 is kept, else the last one. ``run_dir`` keeps the run (metrics.csv, checkpoints, summary.json)."""
        data = _to_dataset(user_items, user_col, item_col)
        if self.valid_frac:
            data = with_validation(data, self.valid_frac, self.config.data.split_seed)
        else:
            # The trainer always evaluates after the last epoch and has no "no test split" mode (requested in
            # notes/sdgar-api-requests.md): rank against the training items, all masked (metrics read 0).
            data.test = data.train
        echo = print if show_progress else _quiet
        with tempfile.TemporaryDirectory(prefix="sdgar-fit-") as tmp:
            folder = Path(run_dir) if run_dir is not None else Path(tmp) / "run"
            config = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train),
                                         data=dataclasses.replace(self.config.data))
            run_training(config, data, folder, echo=echo)
            ckpt = folder / "checkpoints" / "best.pt" if self.valid_frac else resolve_checkpoint(folder, "latest")
            self._load_state(ckpt, config.train.device)
            summary = folder / "summary.json"
            self.summary = json.loads(summary.read_text()) if summary.is_file() else {}
        self.config = config
        self.user_ids, self.item_ids, self.train_matrix = data.user_ids, data.item_ids, data.train
        self.dataset = data
        return self

    def _load_state(self, ckpt: Path, device: str | torch.device) -> dict[str, Any]:
        from sdgar.train import load_trained

        self.device = select_device(str(device))
        self.model, self.config, state = load_trained(ckpt, self.device)
        return state

    # ---------------------------------------------------------------------------------------- factors, ids

    def _check_fitted(self) -> Recommender:
        if self.model is None:
            raise UserError(f"this {type(self).__name__} is not fitted yet: call fit() or sdgar.load()")
        return self.model

    @property
    def user_factors(self) -> np.ndarray:
        return self._check_fitted().factors()[0].float().cpu().numpy()

    @property
    def item_factors(self) -> np.ndarray:
        return self._check_fitted().factors()[1].float().cpu().numpy()

    @property
    def item_bias(self) -> np.ndarray | None:
        bias = self._check_fitted().factors()[2]
        return None if bias is None else bias.float().cpu().numpy()

    def _index(self, ids: Any, kind: str) -> np.ndarray:
        """Internal indices of ``ids`` (the fitted data's ids), a UserError naming the first unknown one."""
        known = self.user_ids if kind == "user" else self.item_ids
        index = pd.Index(known)
        wanted = np.atleast_1d(np.asarray(ids))
        pos = index.get_indexer(wanted)
        if (pos < 0).any() and index.dtype.kind in "iu" and wanted.dtype.kind in "US":  # '7' finds 7
            pos = pd.Index(np.asarray(known).astype(str)).get_indexer(wanted.astype(str))
        if (pos < 0).any():
            bad = wanted[np.flatnonzero(pos < 0)[0]]
            raise UserError(f"{kind} {bad.item()!r} is not in the fitted data ({len(known)} {kind}s, e.g. "
                            f"{', '.join(map(str, known[:3]))})")
        return pos.astype(np.int64)

    # ----------------------------------------------------------------------------------------- recommend

    @torch.no_grad()
    def recommend(self, userid: Any, user_items: sp.spmatrix | None = None, N: int = 10,
                  filter_already_liked_items: bool = True, filter_items: Any = None,
                  items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` (item ids, scores) for one user (1-D arrays) or an array of users (2-D arrays).

        ``user_items``: the users' rows (``user_items[userid]`` as in implicit) whose items are filtered with
        ``filter_already_liked_items``; default: the fitted interactions. ``filter_items`` excludes item ids,
        ``items`` restricts the candidates. For one user, slots past the candidates are dropped; for several,
        they hold score -inf.
        """
        model = self._check_fitted()
        if N < 1:
            raise UserError(f"N must be a positive integer, got {N}")
        single = np.ndim(userid) == 0
        users = self._index(userid, "user")
        scores = model.scores(torch.from_numpy(users).to(self.device)).float()
        n_items = scores.shape[1]
        if filter_already_liked_items:
            liked = self.train_matrix[users] if user_items is None else sp.csr_matrix(user_items)
            if liked.shape != (len(users), n_items):
                raise UserError(f"user_items has shape {liked.shape}; expected ({len(users)}, {n_items}): "
                                "pass user_items[userid]")
            rows = np.repeat(np.arange(len(users)), np.diff(liked.indptr))
            scores[torch.from_numpy(rows), torch.from_numpy(liked.indices.astype(np.int64))] = -torch.inf
        if filter_items is not None:
            scores[:, torch.from_numpy(self._index(filter_items, "item"))] = -torch.inf
        if items is not None:
            keep = torch.zeros(n_items, dtype=torch.bool)
            keep[torch.from_numpy(self._index(items, "item"))] = True
            scores[:, ~keep.to(scores.device)] = -torch.inf
        val, idx = torch.topk(scores, min(N, n_items), dim=1)
        val, idx = val.cpu().numpy(), idx.cpu().numpy()
        ids = np.asarray(self.item_ids)[idx]
        if single:
            keep_n = np.isfinite(val[0])
            return ids[0][keep_n], val[0][keep_n]
        return ids, val

    @torch.no_grad()
    def similar_items(self, itemid: Any, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` items with the most similar item factors (cosine; the item itself comes first, as in
        implicit). One item: 1-D arrays; an array of items: 2-D."""
        if N < 1:
            raise UserError(f"N must be a positive integer, got {N}")
        single = np.ndim(itemid) == 0
        idx = self._index(itemid, "item")
        item = self._check_fitted().factors()[1].float()
        unit = item / item.norm(dim=1, keepdim=True).clamp_min(1e-12)
        sims = unit[torch.from_numpy(idx).to(unit.device)] @ unit.T
        val, top = torch.topk(sims, min(N, len(unit)), dim=1)
        ids = np.asarray(self.item_ids)[top.cpu().numpy()]
        val = val.cpu().numpy()
        return (ids[0], val[0]) if single else (ids, val)

    # ------------------------------------------------------------------------------------ save / export

    def save(self, path: str | os.PathLike) -> Path:
        """One self-contained checkpoint (weights, config, id maps, fitted interactions, versions), mode 0644,
        loadable with :func:`sdgar.load` and by ``sdgar recommend --ckpt`` / ``sdgar evaluate --ckpt``."""
        model = self._check_fitted()
        data = Dataset("python", self.train_matrix, sp.csr_matrix(self.train_matrix.shape, dtype=np.float32),
                       np.asarray(self.user_ids), np.asarray(self.item_ids))
        state = {"model_name": self.model_name, "model": model.state_dict(), "extra": model.extra_state_dict(),
                 "config": self.config.to_dict(), "n_users": model_shape(model)[0], "n_items": model_shape(model)[1],
                 "epoch": int(self.config.train.epochs), "data": artifact_state(data), "versions": versions(),
                 "summary": json.loads(json.dumps(self.summary))}
        return save_checkpoint(path, state)

    def export(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Weights only, for sharing: ``<path>.safetensors`` (``user_factors``, ``item_factors``[, ``item_bias``];
        score = user · item + bias) and ``<path>.json`` (model, config, id maps, versions). Both 0644."""
        from safetensors.torch import save as st_save

        self._check_fitted()
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".safetensors", ".json") else base
        user, item, bias = (t.detach().float().cpu().contiguous() if t is not None else None
                            for t in self.model.factors())
        tensors = {"user_factors": user, "item_factors": item, **({"item_bias": bias} if bias is not None else {})}
        weights = write_out(base.with_name(base.name + ".safetensors"), st_save(tensors))
        meta = {"format": "sdgar-factors", "version": 1, "model": self.model_name,
                "score": "user_factors[u] @ item_factors.T" + (" + item_bias" if bias is not None else ""),
                "n_users": int(user.shape[0]), "n_items": int(item.shape[0]), "factors": int(user.shape[1]),
                "config": self.config.to_dict(), "versions": versions(),
                "user_ids": np.asarray(self.user_ids).tolist(), "item_ids": np.asarray(self.item_ids).tolist()}
        info = write_out(base.with_name(base.name + ".json"), json.dumps(meta, indent=1, default=str) + "\n")
        return weights, info

    def __repr__(self) -> str:
        fitted = "unfitted" if self.model is None else f"{len(self.user_ids)} users × {len(self.item_ids)} items"
        return f"{type(self).__name__}({self.config.model}, epochs={self.config.train.epochs}; {fitted})"


def model_shape(model: Recommender) -> tuple[int, int]:
    user, item, _ = model.factors()
    return int(user.shape[0]), int(item.shape[0])


def artifact_state(data: Dataset) -> dict[str, Any]:
    """:func:`sdgar.run.artifact` in checkpoint form (tensors and lists of str: loads with weights_only)."""
    out: dict[str, Any] = {}
    for key, value in artifact(data).items():
        out[key] = value.tolist() if value.dtype.kind == "U" else torch.from_numpy(np.ascontiguousarray(value))
    return out


def _quiet(_: str) -> None:
    pass


def _to_dataset(user_items: Any, user_col: str, item_col: str) -> Dataset:
    if isinstance(user_items, pd.DataFrame):
        for col in (user_col, item_col):
            if col not in user_items.columns:
                raise UserError(f"the DataFrame has no column {col!r} (columns: {', '.join(map(str, user_items))}); "
                                "name them with user_col= / item_col=")
        df = user_items[[user_col, item_col]].dropna().drop_duplicates()
        u_codes, u_ids = pd.factorize(df[user_col], sort=True)
        i_codes, i_ids = pd.factorize(df[item_col], sort=True)
        m = sp.csr_matrix((np.ones(len(df), np.float32), (u_codes, i_codes)), shape=(len(u_ids), len(i_ids)))
        return from_matrix("python", m, np.asarray(u_ids), np.asarray(i_ids))
    if not sp.issparse(user_items):
        raise UserError(f"fit() takes a scipy.sparse users × items matrix or a pandas DataFrame, "
                        f"not {type(user_items).__name__}")
    return from_matrix("python", user_items)


# ------------------------------------------------------------------------------------------------ loading

def load(path: str | os.PathLike, device: str = "cpu") -> Model:
    """A fitted model from :meth:`Model.save`'s file, a ``sdgar train`` checkpoint, or a run dir (its best.pt).

    The id maps and interactions come from the checkpoint, else from the run dir's ``dataset.npz``; only an old
    run that has neither reloads its training data from the paths in its config.
    """
    ckpt = resolve_checkpoint(path)
    state = load_checkpoint(ckpt)
    if "model_name" not in state or "config" not in state:
        raise UserError(f"{ckpt} is not an sdgar model checkpoint (no model_name/config in it)")
    cls = API_CLASSES.get(state["model_name"])
    if cls is None:
        raise UserError(f"{ckpt} holds model {state['model_name']!r}, which this version does not know")
    obj = cls.__new__(cls)
    obj.preset, obj.valid_frac, obj.summary = None, 0.0, state.get("summary", {})
    obj._load_state(ckpt, device)
    data = load_data(ckpt, state, obj.config)
    if (data.n_users, data.n_items) != (state["n_users"], state["n_items"]):
        raise UserError(f"{ckpt} was trained on {state['n_users']} users × {state['n_items']} items but its data "
                        f"({data.name}) has {data.n_users} × {data.n_items}; pass the data it was trained on")
    obj.user_ids, obj.item_ids, obj.train_matrix = data.user_ids, data.item_ids, data.train
    obj.dataset = data
    return obj


def load_data(ckpt: Path, state: dict[str, Any], config: RunConfig) -> Dataset:
    """The data a checkpoint was trained on: in the checkpoint, in its run dir, or (old runs) from the source."""
    if "data" in state:
        return dataset_from_artifact({k: np.asarray(v) if not torch.is_tensor(v) else v.numpy()
                                      for k, v in state["data"].items()})
    for run_dir in (ckpt.parent.parent, ckpt.parent):  # run/checkpoints/best.pt, or a file beside dataset.npz
        data = read_artifact(run_dir)
        if data is not None:
            return data
    from sdgar.data import load_dataset

    try:
        return load_dataset(config.data)
    except UserError as exc:
        raise UserError(f"{ckpt}: no {ARTIFACT} beside it (a run from before it was written) and its training "
                        f"data cannot be loaded: {exc}") from None


class SDGAR(Model):
    """SD-GAR (Jin et al., NeurIPS 2020): an MF discriminator trained against a sampling-decomposable generator
    (factors = dis_emb_dim, negatives = dis_sample_num, regularization = dis_lambda; the rest: SDGARConfig)."""

    model_name = "sdgar"


class BPR(Model):
    """Bayesian personalised ranking, uniform negatives, MF with item bias (factors = dim, regularization = reg)."""

    model_name = "bpr"


class ALS(Model):
    """Weighted matrix factorisation by alternating least squares (Hu et al. 2008; implicit's ALS)."""

    model_name = "als"


class WARP(Model):
    """WARP loss (Weston et al. 2011): draw negatives until one violates the margin, weight by the rank."""

    model_name = "warp"


class DNS(Model):
    """Dynamic negative sampling (Zhang et al. 2013): the highest-scored of X uniform candidates, BPR loss."""

    model_name = "dns"


class SA(Model):
    """Self-adversarial negative weighting (Sun et al. 2019): SD-GAR's loss with a uniform proposal."""

    model_name = "sa"


class AOBPR(Model):
    """Adaptive oversampling BPR (Rendle & Freudenthaler 2014)."""

    model_name = "aobpr"


class CML(Model):
    """Collaborative metric learning (Hsieh et al. 2017)."""

    model_name = "cml"


class IRGAN(Model):
    """IRGAN item recommendation (Wang et al. 2017): policy-gradient generator against an MF discriminator."""

    model_name = "irgan"


API_CLASSES: dict[str, type[Model]] = {c.model_name: c for c in (SDGAR, BPR, ALS, WARP, DNS, SA, AOBPR, CML, IRGAN)}
