"""Mixed precision (CUDA only), early stopping and the learning-rate decay of the ``best`` preset (issues 7, 10)."""

from pathlib import Path

import pandas as pd
import pytest
import torch
from neurips20_common import RunDir, UserError

from sdgar.config import make_config
from sdgar.data import load_dataset
from sdgar.models.base import TrainData
from sdgar.models.sdgar import SDGAR, SDGARConfig
from sdgar.precision import MixedPrecision
from sdgar.train import check_precision, train

TINY = {"dis_emb_dim": 8, "gen_emb_dim": 4, "gen_sample_num_item": 8, "gen_sample_num_user": 8, "gen_every": 2}


def _config(epochs: int, train_over: dict | None = None, **model):
    return make_config("sdgar", None, {"data": "synthetic", "synthetic_size": "tiny"},
                       {"epochs": epochs, "eval_every": 1, "threads": 1, "device": "cpu", **(train_over or {})},
                       {**TINY, **model})


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_mixed_precision_is_refused_off_cuda(mode: str) -> None:
    with pytest.raises(UserError, match="needs a CUDA device"):
        MixedPrecision(mode, "cpu")
    with pytest.raises(UserError, match="unknown precision"):
        MixedPrecision("fp8", "cpu")


def test_mixed_precision_refused_for_models_without_autocast() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the model check runs after the device check")
    with pytest.raises(UserError, match="trains in fp32"):
        check_precision("bf16", "irgan", torch.device("cuda"))


def test_fp32_step_is_a_plain_adam_step() -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    opt_a, opt_b = torch.optim.Adam([a], lr=0.1), torch.optim.Adam([b], lr=0.1)
    amp = MixedPrecision("fp32", "cpu")
    for _ in range(3):
        with amp.autocast():
            loss_a = (a.sin() ** 2).sum()
        amp.step(loss_a, opt_a)
        opt_b.zero_grad()
        (b.sin() ** 2).sum().backward()
        opt_b.step()
    assert not amp.enabled and torch.equal(a, b)
    assert amp.state_dict() == {"mode": "fp32", "scaler": {}}
    with pytest.raises(UserError, match="same precision"):
        amp.load_state_dict({"mode": "bf16", "scaler": {}})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision is CUDA-only; no GPU here")
@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cuda(tmp_path: Path, mode: str) -> None:
    cfg = _config(3, {"device": "cuda", "precision": mode})
    result = train(cfg, load_dataset(cfg.data), RunDir.create(tmp_path, mode), echo=lambda s: None)
    assert result.best["NDCG@50"] > 0


def test_patience_stops_when_validation_stalls(tmp_path: Path) -> None:
    cfg = _config(20, {"patience": 2}, learning_rate=0.0)  # lr 0: D never changes, so epoch 1 stays the best
    cfg.data.valid_frac = 0.1
    run = RunDir.create(tmp_path, "run")
    lines: list[str] = []
    result = train(cfg, load_dataset(cfg.data), run, echo=lines.append)
    assert result.best_epoch == 1
    assert list(pd.read_csv(run.path / "metrics.csv")["epoch"]) == [1, 2, 3]
    assert any("early stop at epoch 3" in line for line in lines)


def test_lr_decay_multiplies_the_learning_rate_every_epoch() -> None:
    data = load_dataset(_config(1).data)
    model = SDGAR(data.n_users, data.n_items, SDGARConfig(**TINY, learning_rate=0.01, lr_decay=0.5))
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        model.train_epoch(TrainData(data.train), gen)
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3)


def test_best_preset_keeps_the_official_presets_and_keeps_the_last_epoch() -> None:
    best = make_config("sdgar", "best", {"data": "citeulike"})
    official = make_config("sdgar", "citeulike", {"data": "citeulike"})
    assert best.train.keep == "last"  # the run length was chosen on validation: test never selects an epoch
    assert (best.model.dis_emb_dim, best.model.engine) == (128, "fast") and best.model.dis_sample_num > 50
    assert make_config("als", "best", {"data": "citeulike"}).train.epochs == 5  # ALS's own tuned iterations
    # Gowalla's own validation choice for ALS (per_data) replaces best's ALS on Gowalla only; SD-GAR stays best's
    gowalla = make_config("sdgar", "best", {"data": "gowalla"})
    assert gowalla.model == best.model and gowalla.train == best.train
    als, als_cite = make_config("als", "best", {"data": "gowalla"}), make_config("als", "best", {"data": "citeulike"})
    assert (als.train.epochs, als.model.reg, als.model.alpha, als.model.factors) == (10, 30.0, 40.0, 256)
    assert (als_cite.model.reg, als_cite.model.alpha) == (100.0, 100.0)
    assert make_config("als", "best", {"data": "gowalla"}, model_overrides={"reg": 1.0}).model.reg == 1.0  # --set wins
    old = make_config("sdgar", "issue10", {"data": "citeulike"})
    assert old.train.eval_every == old.train.epochs
    assert (old.model.dis_emb_dim, old.model.dis_sample_num, old.model.optimizer) == (128, 50, "lazy_adam")
    assert (official.model.dis_emb_dim, official.model.dis_sample_num, official.model.optimizer) == (32, 5, "adam")
