"""Saliency: the Jacobian maps are |∂f/∂s| (checked on a linear Q), and `rd2 saliency` writes PNGs + a GIF for an
Atari RD² checkpoint (masks drawn as 7×7 maps) and a feature bar plot for a toy checkpoint."""

import numpy as np
import torch
from neurips20_common import RunDir
from PIL import Image
from torch import nn

from rd2.agents.dqn import DQN
from rd2.saliency import run_saliency, saliency_step
from rd2.train import TrainConfig, Trainer, agent_config


class LinearQ(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, obs):
        return self.lin(obs.float()).unsqueeze(-1)


def test_saliency_of_linear_q_is_abs_weight_row() -> None:
    agent = DQN(agent_config("dqn", "toy"), (6,), 3, torch.device("cpu"))
    agent.online = LinearQ()
    obs = np.random.default_rng(0).random(6).astype(np.float32)
    maps, values, a_star = saliency_step(agent, obs)
    q = agent.online(torch.from_numpy(obs)[None])[0, :, 0]
    assert a_star == int(q.argmax())
    assert np.allclose(maps["sal_Q"], agent.online.lin.weight[a_star].abs().detach().numpy())
    assert np.isclose(values["Q"], float(q.max().detach()))


def _train_tiny(tmp_path, env: str, frames: int) -> RunDir:
    cfg = TrainConfig(env=env, algo="rd2", preset="cpu" if env != "toy" else "toy", frames=frames, seed=0,
                      eval_every=0, ckpt_every=0, progress=False)
    acfg = agent_config("rd2", cfg.preset, {"buffer_size": 300, "learning_starts": 40, "batch_size": 4,
                                            "hidden": 16, "dec_batch_size": 4, "decomposition.hidden": 16})
    run = RunDir(tmp_path / env)
    Trainer(cfg, acfg, run).train()
    return run


def test_saliency_atari_rd2_pngs_and_gif(tmp_path) -> None:
    run = _train_tiny(tmp_path, "Pong", 48 * 4)  # a few updates so every head has a gradient path
    ckpt = sorted(run.checkpoints.glob("ckpt-*.pt"))[-1]
    out = run_saliency(ckpt, steps=3, out_dir=tmp_path / "sal", png_every=2, show_progress=False)
    gif = Image.open(out["gif"])
    assert gif.n_frames == 3
    pngs = sorted((tmp_path / "sal").glob("step_*.png"))
    assert [p.name for p in pngs] == ["step_0000.png", "step_0002.png"]
    # tiles: frame, saliency r̂1 r̂2 Q1 Q2, masks m1 m2 → 7 tiles of 168 px
    assert Image.open(pngs[0]).size[0] == 7 * 168


def test_saliency_step_maps_for_rd2_frames(tmp_path) -> None:
    from rd2.agents.rd2 import RD2Agent

    torch.manual_seed(0)
    agent = RD2Agent(agent_config("rd2", "cpu", {"hidden": 16, "decomposition.hidden": 16}), (4, 84, 84), 6,
                     torch.device("cpu"), num_components=2)
    obs = np.random.default_rng(0).integers(0, 255, (4, 84, 84), dtype=np.uint8)
    maps, _, _ = saliency_step(agent, obs)
    assert set(maps) == {"sal_r1", "sal_r2", "sal_Q1", "sal_Q2", "mask1", "mask2"}
    for name, m in maps.items():
        assert m.shape == (84, 84) and np.all(np.isfinite(m)) and m.min() >= 0
        if name.startswith("mask"):
            assert m.max() <= 1.0
    assert maps["sal_Q1"].sum() > 0 and maps["sal_r1"].sum() > 0


def test_saliency_toy_feature_plot(tmp_path) -> None:
    run = _train_tiny(tmp_path, "toy", 120)
    ckpt = sorted(run.checkpoints.glob("ckpt-*.pt"))[-1]
    out = run_saliency(ckpt, steps=5, out_dir=tmp_path / "sal", show_progress=False)
    assert Image.open(out["png"]).size[0] > 0
    assert "gif" not in out
