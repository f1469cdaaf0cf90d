import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from neurips20_common import RunDir, load_checkpoint

from rd2.cli import main
from rd2.config import config_from_dict, make_config
from rd2.decompose import run_decompose


def _cfg(iters: int):
    cfg = make_config("demo", env="PongNoFrameskip-v4", steps=1200, num_envs=2, iters=iters, batch_size=4,
                      eval_every=2, eval_samples=8, ckpt_every=2, csv_zero_rows=10, threads=1)
    cfg.decomposition = dataclasses.replace(cfg.decomposition, hidden=16)
    return cfg


def test_resume_continues_exactly(tmp_path) -> None:
    straight = RunDir.create(tmp_path, "straight")
    run_decompose(_cfg(4), straight, torch.device("cpu"), log=lambda s: None)
    split = RunDir.create(tmp_path, "split")
    run_decompose(_cfg(2), split, torch.device("cpu"), log=lambda s: None)
    run_decompose(_cfg(4), split, torch.device("cpu"), resume=True, log=lambda s: None)
    a = load_checkpoint(straight.checkpoints / "ckpt-000000004.pt")["model"]
    b = load_checkpoint(split.checkpoints / "ckpt-000000004.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    ma, mb = pd.read_csv(straight.file("metrics.csv")), pd.read_csv(split.file("metrics.csv"))
    assert ma["step"].tolist() == mb["step"].tolist() == [2, 4]
    np.testing.assert_allclose(ma["L_sum"], mb["L_sum"])
    # the run dir has everything the job promises
    for name in ("sub_rewards.csv", "channel_stats.csv", "purity.json", "masks.png", "scatter.png", "samples.npz",
                 "collection.json"):
        assert split.file(name).exists(), name
    assert not split.file("replay.npz").exists()  # not kept by default: the resume collected the same data again
    table = pd.read_csv(split.file("sub_rewards.csv"))
    assert {"reward_raw", "reward_clipped", "r_hat_0", "r_hat_1", "channel", "source"} <= set(table.columns)
    assert (table["reward_raw"] != 0).sum() >= 1
    purity = json.loads(split.file("purity.json").read_text())
    assert 0.0 <= purity["balanced_purity"] <= 1.0 and 0.0 <= purity["purity"] <= 1.0
    assert purity["sources"] == ["point won", "point lost"] and "collapsed" in purity["health"]


def test_config_roundtrip_and_bad_preset(tmp_path) -> None:
    cfg = make_config("demo", K=3, lambda_mini=0.5)
    assert cfg.decomposition.K == 3 and cfg.decomposition.lambda_mini == 0.5 and cfg.steps == 50_000
    run = RunDir.create(tmp_path, "c")
    run.write_config(cfg)
    assert config_from_dict(run.read_config()) == cfg
    with pytest.raises(Exception, match="unknown preset"):
        make_config("nope")


def test_cli_errors_are_one_clear_message(tmp_path) -> None:
    res = CliRunner().invoke(main, ["decompose", "--resume", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "does not exist" in res.output
    res = CliRunner().invoke(main, ["decompose", "--env", "NotAGame", "--run-dir", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not an Atari game" in res.output
    res = CliRunner().invoke(main, ["decompose", "--env", "Pong", "--policy", "agent", "--agent-ckpt",
                                    str(tmp_path / "nope.pt"), "--run-dir", str(tmp_path / "y")])
    assert res.exit_code != 0 and "nope.pt does not exist" in res.output


def test_cli_toy_writes_table(tmp_path) -> None:
    out = tmp_path / "t.csv"
    res = CliRunner().invoke(main, ["toy", "--seeds", "1", "--iters", "30", "--variants", "rd2,unmasked_k_heads",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert table["variant"].tolist() == ["rd2", "unmasked_k_heads"]
    assert {"channel_accuracy_mean", "sub_reward_mse_mean", "masks_recovered", "sum_mse_mean"} <= set(table.columns)


def _replay_with(rewards: list[float]):
    from rd2.replay import ReplayBuffer

    rb = ReplayBuffer(64, 1, frame_shape=(2, 2))
    rb.start([0], np.zeros((1, 4, 2, 2), np.uint8))
    for r in rewards:
        rb.add([0], np.zeros(1, np.int64), np.array([r], np.float32), np.zeros(1, bool), np.zeros(1, bool),
               np.zeros((1, 4, 2, 2), np.uint8))
    return rb


@pytest.mark.parametrize(("rewards", "K", "expected"), [
    ([0, 1, -1, 0], 2, "+,-"), ([0, 20, 100], 2, "+,+"), ([0, -5], 3, "-,-,-"), ([0, 0], 2, ""),
    ([1, -1], 3, "+,+,-")])
def test_auto_sign_prior_follows_the_collected_rewards(rewards, K, expected) -> None:
    from rd2.decompose import auto_signs

    assert auto_signs(_replay_with(rewards), K) == expected


def test_scaled_reward_target_divides_by_the_largest_raw_reward() -> None:
    from rd2.decompose import reward_scale

    rb = _replay_with([0, 20, 100, 120])
    assert reward_scale(rb, make_config("demo", reward_target="scaled")) == 120.0
    assert reward_scale(rb, make_config("demo", reward_target="clipped")) == 1.0


def test_health_flags_input_independent_sub_rewards() -> None:
    from rd2.decompose import health

    cfg = make_config("demo")
    rng = np.random.default_rng(0)
    target = rng.choice([-1.0, 0.0, 1.0], size=1000, p=[0.25, 0.5, 0.25]).astype(np.float32)
    const = np.tile([[0.01, -0.01]], (1000, 1))
    dead = health(const, target, l_sum_final=0.5, cfg=cfg)
    assert dead["collapsed"] and len(dead["reasons"]) == 2  # L_sum at its constant value, and no input dependence
    fit = np.stack([np.maximum(target, 0), np.minimum(target, 0)], 1) + rng.normal(0, 0.05, (1000, 2))
    ok = health(fit, target, l_sum_final=0.02, cfg=cfg)
    assert not ok["collapsed"] and not ok["warnings"] and ok["L_sum_ratio"] < 0.1
    slow = health(fit, target, l_sum_final=0.3, cfg=cfg)
    assert not slow["collapsed"] and "under-fitted" in slow["warnings"][0]
    assert health(fit, target, l_sum_final=float("nan"), cfg=cfg)["collapsed"]


def test_progress_bar_shows_rate_balanced_purity_and_l_sum(tmp_path) -> None:
    res = CliRunner().invoke(main, ["decompose", "--env", "toy", "--steps", "2000", "--num-envs", "2", "--iters", "40",
                                    "--eval-every", "20", "--ckpt-every", "20", "--threads", "1", "--progress",
                                    "--run-dir", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "decompose MonsterTreasure" in res.output
    for key in ("upd_s=", "bal_purity=", "L_sum="):
        assert key in res.output, key
