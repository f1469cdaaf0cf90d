"""`rd2 train` end to end on the toy game: resuming from a checkpoint taken at an episode end reproduces the
uninterrupted run bit for bit on CPU (model, target, optimizer, priorities, RNG, counters, replay)."""

import shutil

import pandas as pd
import pytest
import torch
from neurips20_common import RunDir, load_checkpoint

from rd2.train import TrainConfig, Trainer, agent_config

SMALL = {"learning_starts": 100, "batch_size": 16, "hidden": 16, "torso_hidden": 16, "target_update": 50,
         "dec_batch_size": 16, "decomposition.hidden": 16}


def _configs(algo: str):
    cfg = TrainConfig(env="toy", algo=algo, preset="toy", frames=600, seed=3, eval_every=300, eval_episodes=1,
                      ckpt_every=200, keep_last=5, save_buffer=True, progress=False)
    extra = {"prioritized": True, "noisy": True} if algo == "rainbow" else {}  # exercise PER + noise RNG
    acfg = agent_config(algo, "toy", {k: v for k, v in {**SMALL, **extra}.items()
                                      if algo == "rd2" or not k.startswith("dec")})
    return cfg, acfg


@pytest.mark.parametrize("algo", ["rd2", "rainbow"])
def test_resume_is_bit_identical(tmp_path, algo: str) -> None:
    cfg, acfg = _configs(algo)
    full = RunDir(tmp_path / "full")
    Trainer(cfg, acfg, full).train()
    ckpt = full.checkpoints / "ckpt-000000200.pt"
    assert load_checkpoint(ckpt)["episode_boundary"]

    # a run that "died" right after its step-200 checkpoint: only that checkpoint, its replay and the logs so far
    part = RunDir(tmp_path / "part")
    (part.checkpoints).mkdir(parents=True)
    shutil.copy(ckpt, part.checkpoints / ckpt.name)
    for f in full.checkpoints.glob("replay-000000200.*"):
        shutil.copy(f, part.checkpoints / f.name)
    for name in ("progress.csv", "eval.csv"):
        shutil.copy(full.file(name), part.file(name))  # includes rows after step 200: resume must drop them
    resumed = Trainer(cfg, acfg, part)
    resumed.train(resume_from=part.checkpoints / ckpt.name)
    assert resumed.exact

    a = load_checkpoint(full.checkpoints / "ckpt-000000600.pt")
    b = load_checkpoint(part.checkpoints / "ckpt-000000600.pt")
    assert a["counters"] == b["counters"]
    for net in ("online", "target"):
        for k, v in a["agent"][net].items():
            assert torch.equal(v, b["agent"][net][k]), f"{net}.{k} differs after resume"
    for sa, sb in zip(a["agent"]["optimizer"]["state"].values(), b["agent"]["optimizer"]["state"].values(),
                      strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    pa, pb = pd.read_csv(full.file("progress.csv")), pd.read_csv(part.file("progress.csv"))
    cols = [c for c in pa.columns if c != "sps"]
    pd.testing.assert_frame_equal(pa[cols], pb[cols])
    ea, eb = pd.read_csv(full.file("eval.csv")), pd.read_csv(part.file("eval.csv"))
    pd.testing.assert_frame_equal(ea, eb)


def test_warmup_acts_uniformly_even_with_noisy_nets(tmp_path) -> None:
    """Before learning starts the behaviour policy is uniform (ε = 1), also for noisy agents whose schedule is
    ε = 0: a frozen noisy net would repeat one action for the whole warm-up."""
    cfg = TrainConfig(env="toy", algo="rainbow", preset="toy", frames=300, seed=0, eval_every=0, ckpt_every=0,
                      progress=False)
    acfg = agent_config("rainbow", "toy", {"noisy": True, "eps_start": 0.0, "eps_end": 0.0, "learning_starts": 200,
                                           "batch_size": 16, "hidden": 16})
    trainer = Trainer(cfg, acfg, RunDir(tmp_path / "run"))
    assert trainer.epsilon() == 1.0
    trainer.step = 199
    assert trainer.epsilon() == 1.0
    trainer.step = 200
    assert trainer.epsilon() == 0.0
    summary = trainer.train()
    assert summary["step"] == 300 and isinstance(summary["unfinished"], list)
