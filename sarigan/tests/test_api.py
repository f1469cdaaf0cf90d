"""The Python API and data sources (issues 16, 20): load_generator, generate, export, --outdir, lfw, folders, ADA."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from neurips20_common import UserError
from PIL import Image

import sarigan
from sarigan.augment import AdaptiveAugment, augment
from sarigan.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    path, world = sarigan.train("shapes", preset="tiny", run_dir=tmp_path_factory.mktemp("api") / "run",
                                overrides={"kimg": 0.04}, device="cpu", threads=1, log=lambda m: None)
    assert world == 1
    return path


def test_public_names() -> None:
    assert {"load_generator", "train", "PretrainedGenerator", "SariGANConfig", "load_data"} <= set(dir(sarigan))


def test_generate_is_deterministic_per_seed(run: Path) -> None:
    G = sarigan.load_generator(run)
    assert G.z_dim == 16 and G.resolution == 8 and G.meta["step"] == 5
    a = G.generate(seeds=range(6), psi=0.7)
    assert a.dtype == np.uint8 and a.shape == (6, 8, 8, 3)
    assert np.array_equal(a, G.generate(seeds=range(6), psi=0.7))
    assert np.abs(G.generate(seeds=[4]).astype(int) - G.generate(seeds=range(6))[4]).max() <= 1
    assert all(not np.array_equal(a[i], a[j]) for i in range(6) for j in range(i + 1, 6))
    raw = sarigan.load_generator(run, ema=False)
    assert not np.array_equal(raw.generate(seeds=range(6), psi=0.7), a)  # G and G_ema differ after training
    with pytest.raises(UserError):
        G.generate(seeds=[])


def test_export_roundtrip_and_bad_files(run: Path, tmp_path: Path) -> None:
    G = sarigan.load_generator(run / "checkpoints" / "ckpt-000000005.pt")
    weights, side = G.save_weights(tmp_path / "g.safetensors")
    assert (weights.stat().st_mode & 0o044) == 0o044  # readable by others
    G2 = sarigan.load_generator(weights)
    assert np.array_equal(G2.generate(seeds=range(4)), G.generate(seeds=range(4)))
    with pytest.raises(UserError, match="safetensors"):
        G.save_weights(tmp_path / "g.pt")
    side.unlink()
    with pytest.raises(UserError, match=r"g\.json is missing"):
        sarigan.load_generator(weights)
    with pytest.raises(UserError, match="does not exist"):
        sarigan.load_generator(tmp_path / "nothing")


def test_generate_outdir_and_export_cli(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "imgs"
    res = CliRunner().invoke(main, ["generate", "--ckpt", str(run), "--seeds", "0-2,7", "--outdir", str(out),
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png",
                                                     "seed0007.png"]
    img = np.asarray(Image.open(out / "seed0007.png"))
    assert img.shape == (8, 8, 3)
    assert np.array_equal(img, sarigan.load_generator(run).generate(seeds=[7])[0])
    res = CliRunner().invoke(main, ["export", "--ckpt", str(run), "--out", str(tmp_path / "e.safetensors")])
    assert res.exit_code == 0 and (tmp_path / "e.json").is_file(), res.output


def test_example_script_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["generate_api.py", "--run-dir", str(tmp_path / "ex"), "--kimg", "0.08"])
    runpy.run_path(str(EXAMPLES / "generate_api.py"), run_name="__main__")
    assert (tmp_path / "ex" / "export" / "generator.safetensors").is_file()


def test_lfw_ships_offline() -> None:
    pytest.importorskip("skimage")
    d = sarigan.load_data("lfw", 32)
    assert d.images.shape == (100, 3, 32, 32) and d.images.dtype == torch.uint8
    assert torch.equal(d.images[:, 0], d.images[:, 2]) and d.images.float().std() > 20  # grey, not blank


def test_train_on_a_folder_of_photos_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):  # smooth "photos" of different sizes, one grey, one JPEG
        h, w = 40 + 7 * i, 64 - 3 * i
        base = np.linspace(0, 255, w)[None, :, None] * rng.uniform(0.3, 1, (1, 1, 3))
        img = np.broadcast_to(base, (h, w, 3)).astype(np.uint8)
        Image.fromarray(img).convert("L" if i == 2 else "RGB").save(folder / f"p{i}.{'jpg' if i == 3 else 'png'}")
    (folder / "notes.txt").write_text("not an image, ignored")
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "photos"), "--preset", "tiny", "--kimg",
                                    "0.04", "--augment", "ada", "--set", "ada_kimg=0.1", "--run-dir", str(run),
                                    "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "6 images from photos" in res.output
    G = sarigan.load_generator(run)
    assert G.generate(seeds=range(2)).shape == (2, 8, 8, 3)
    assert "ada_p" in (run / "metrics.csv").read_text().splitlines()[0]


def test_augment_is_differentiable_and_adapts() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8, requires_grad=True) * 2 - 1
    assert augment(x, 0.0) is x
    y = augment(x, 1.0)
    assert y.shape == x.shape and not torch.equal(y, x)
    grad, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    grad.sum().backward()  # double backward (R1 through the augmentation) works
    ada = AdaptiveAugment(target=0.6, interval=4, kimg=0.1, batch=8)
    for step in range(8):  # D confident on reals: r_t = 1 > 0.6 → p rises by 8·4/100 every 4 iterations
        ada.observe(1.0, step)
    assert ada.p == pytest.approx(0.64)
    for step in range(8, 40):
        ada.observe(-1.0, step)
    assert ada.p == 0.0


def test_resume_is_exact_with_ada(tmp_path: Path) -> None:
    from neurips20_common import load_checkpoint, save_checkpoint

    from sarigan.config import get_preset
    from sarigan.data import load_shapes
    from sarigan.train import Trainer

    cfg = get_preset("tiny").replace(augment="ada", ada_kimg=0.05, d_reg_every=2)
    data = load_shapes(8, n=64)
    a = Trainer(cfg, data, seed=1)
    a.ada.p = 0.5  # augmentations active from the start (p alone would stay ≈ 0 in 12 iterations)
    for _ in range(6):
        a.train_step()
    save_checkpoint(tmp_path / "c.pt", a.state_dict())
    for _ in range(6):
        a.train_step()
    b = Trainer(cfg, data, seed=2)
    b.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    for _ in range(6):
        b.train_step()
    assert a.ada.p == b.ada.p and a.ada.p != 0.5  # p moved and was restored
    assert all(torch.equal(v, b.G.state_dict()[k]) for k, v in a.G.state_dict().items())


def test_tensorboard_logs_the_metrics_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--preset", "tiny", "--kimg", "0.08", "--run-dir", str(run),
                                    "--device", "cpu", "--threads", "1", "--tensorboard"])
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss_d", "loss_g", "fd"} <= tags
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(header) - {"step"} == tags  # the same scalars as metrics.csv
    assert [e.step for e in acc.Scalars("loss_d")] == [5, 10]
