from pathlib import Path

import pandas as pd
import pytest
import torch
from neurips20_common import RunDir, load_checkpoint

from sdgar.config import make_config
from sdgar.data import load_dataset
from sdgar.train import load_trained, train

TINY_SDGAR = {"dis_emb_dim": 8, "gen_emb_dim": 4, "gen_sample_num_item": 8, "gen_sample_num_user": 8, "gen_every": 2}


def _config(model: str = "sdgar", epochs: int = 4, **model_overrides):
    over = {**TINY_SDGAR, **model_overrides} if model == "sdgar" else {"dim": 8, **model_overrides}
    return make_config(model, None, {"data": "synthetic", "synthetic_size": "tiny"},
                       {"epochs": epochs, "eval_every": 2, "threads": 1, "device": "cpu"}, over)


TIMING = ("seconds",)


def _rows(run: Path) -> pd.DataFrame:
    df = pd.read_csv(run / "metrics.csv")
    return df[[c for c in df.columns if not c.endswith(TIMING)]]


@pytest.mark.parametrize("model", ["sdgar", "bpr"])
def test_resume_is_bit_identical(tmp_path: Path, model: str) -> None:
    data = load_dataset(_config(model).data)
    straight = RunDir.create(tmp_path, "straight")
    train(_config(model, 4), data, straight, echo=lambda s: None)
    split = RunDir.create(tmp_path, "split")
    train(_config(model, 2), data, split, echo=lambda s: None)
    cfg = _config(model, 4)
    train(cfg, data, split, resume=True, echo=lambda s: None)
    pd.testing.assert_frame_equal(_rows(straight.path), _rows(split.path))
    a = load_checkpoint(straight.checkpoints / "ckpt-000000004.pt")
    b = load_checkpoint(split.checkpoints / "ckpt-000000004.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_training_learns_and_best_checkpoint_loads(tmp_path: Path) -> None:
    cfg = _config("sdgar", 6)
    data = load_dataset(cfg.data)
    run = RunDir.create(tmp_path, "run")
    result = train(cfg, data, run, echo=lambda s: None)
    df = pd.read_csv(run.path / "metrics.csv").dropna(subset=["NDCG@50"])
    assert len(df) == 3 and df["NDCG@50"].iloc[-1] > df["NDCG@50"].iloc[0]
    assert (run.path / "config.json").is_file() and (run.path / "item_ids.txt").is_file()
    model, config, state = load_trained(run.checkpoints / "best.pt")
    assert state["epoch"] == result.best_epoch and config.train.model == "sdgar"
    assert model.scores(torch.tensor([0, 1])).shape == (2, data.n_items)


def test_validation_without_test_and_keep_last(tmp_path: Path) -> None:
    """eval_test=False never evaluates test (the sweeps' rule); keep="last" keeps the final evaluation whatever
    its value (a run length fixed on validation), and ignores patience."""
    cfg = _config("bpr", 6)
    cfg.data.valid_frac = 0.2
    cfg.train.eval_test = False
    data = load_dataset(cfg.data)
    result = train(cfg, data, RunDir.create(tmp_path, "valid"), echo=lambda s: None)
    df = pd.read_csv(tmp_path / "valid" / "metrics.csv")
    assert "valid_NDCG@50" in df and "NDCG@50" not in df
    assert result.best and all(k.startswith("valid_") for k in result.best)

    cfg = _config("bpr", 6)
    cfg.train.keep, cfg.train.patience = "last", 1
    result = train(cfg, load_dataset(cfg.data), RunDir.create(tmp_path, "last"), echo=lambda s: None)
    curve = pd.read_csv(tmp_path / "last" / "metrics.csv").dropna(subset=["NDCG@50"])
    assert result.best_epoch == 6 and len(curve) == 3  # no early stop, the last evaluation kept
    assert result.best["NDCG@50"] == pytest.approx(curve["NDCG@50"].iloc[-1])
