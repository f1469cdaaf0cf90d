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
