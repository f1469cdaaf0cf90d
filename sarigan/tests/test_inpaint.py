"""Inpainting (issue 20): seeded masks, exact pass-through of visible pixels, conditioning, training, metrics, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from test_groups import make_ckpt

from sarigan.cli import main
from sarigan.config import get_preset
from sarigan.data import ImageData, load_shapes
from sarigan.inpaint import InpaintConfig, Inpainter, InpaintGenerator, InpaintTrainer, split_data
from sarigan.masks import MaskConfig, box_from_spec, masks
from sarigan.metrics.inpaint import masked_l1, psnr
from sarigan.networks import Generator
from sarigan.project import ProjectConfig, project


@pytest.mark.parametrize("kind", ["free-form", "box", "mixed"])
@pytest.mark.parametrize("res", [8, 16, 32])
def test_masks_are_seeded_and_within_coverage(kind: str, res: int) -> None:
    cfg = MaskConfig(kind=kind, coverage_min=0.15, coverage_max=0.4)
    a = masks(res, cfg, seed=3, start=0, n=64)
    assert a.shape == (64, 1, res, res) and set(a.unique().tolist()) <= {0.0, 1.0}
    cov = a.mean((1, 2, 3))
    assert (cov >= 0.15).all() and (cov <= 0.4).all(), (cov.min(), cov.max())
    assert cov.std() > 0.02  # coverages spread over the range, not one value
    assert torch.equal(a, masks(res, cfg, seed=3, start=0, n=64))  # same seed → same masks
    assert torch.equal(a[10:20], masks(res, cfg, seed=3, start=10, n=10))  # independent of batch composition
    assert not torch.equal(a, masks(res, cfg, seed=4, start=0, n=64))


def test_box_from_spec_maps_through_resize_and_centre_crop() -> None:
    # a 40×20 image → resized to 32×16 → centre crop 16×16 drops 8 columns on the left
    m = box_from_spec("20,0,10,10", 16, 40, 20)[0, 0]
    rows, cols = torch.nonzero(m, as_tuple=True)
    assert (rows.min().item(), rows.max().item()) == (0, 7)
    assert (cols.min().item(), cols.max().item()) == (8, 15)
    with pytest.raises(Exception, match="covers no pixel"):
        box_from_spec("0,0,2,2", 16, 40, 20)


def test_metrics_known_values() -> None:
    truth = torch.zeros(2, 3, 4, 4)
    pred = truth.clone()
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1
    pred[:, :, :2] += 0.2  # [−1, 1] units: 0.1 in [0, 1] units, on the hole only
    pred[:, :, 2:] += 1.0  # outside the hole: ignored by the hole L1
    assert torch.allclose(masked_l1(pred, truth, mask).double(), torch.full((2,), 0.1, dtype=torch.float64))
    assert torch.allclose(psnr(pred, truth, mask), torch.full((2,), 20.0, dtype=torch.float64))
    whole = 10 * np.log10(1 / ((0.1**2 + 0.5**2) / 2))
    assert torch.allclose(psnr(pred, truth), torch.full((2,), whole, dtype=torch.float64))


def _tiny_model(grouping: str = "learned") -> InpaintGenerator:
    torch.manual_seed(0)
    return InpaintGenerator(get_preset("tiny").replace(grouping=grouping)).eval()


@pytest.mark.parametrize("grouping", ["learned", "none"])
def test_visible_pixels_pass_through_exactly_and_the_hole_depends_on_them(grouping: str) -> None:
    G = _tiny_model(grouping)
    x = load_shapes(8, n=6, seed=1).images.float() / 127.5 - 1
    m = masks(8, MaskConfig(), seed=0, start=0, n=6)
    z = torch.randn(6, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = G(x, m, z)
        visible = m.expand_as(x) == 0
        assert torch.equal(out[visible], x[visible])
        # change only the visible pixels: the filled hole changes (the encoder conditions the synthesis)
        x2 = x.flip(0)
        out2 = G(x2, m, z)
        hole = ~visible
        assert (out2[hole] - out[hole]).abs().mean() > 1e-3
        # and the hole's original content never reaches the model
        x3 = torch.where(hole, torch.rand_like(x) * 2 - 1, x)
        assert torch.equal(G(x3, m, z), out)
    inp = Inpainter(G, conditional=True)
    assert inp.method == ("stylegan2-conditional" if grouping == "none" else "sarigan-conditional")
    done = inp.complete(x, m, seed=0)
    assert torch.equal(done[visible], x[visible])


def _tiny_trainer(seed: int = 0, rec_weight: float = 1.0) -> InpaintTrainer:
    cfg = get_preset("tiny")
    data = load_shapes(8, n=32, seed=0)
    return InpaintTrainer(cfg, InpaintConfig(rec_weight=rec_weight, n_test=8), data, "cpu", seed)


def test_a_few_training_steps_reduce_masked_l1() -> None:
    trainer = _tiny_trainer()
    x = trainer.data.images[:16].float() / 127.5 - 1
    m = masks(8, MaskConfig(), seed=5, start=0, n=16)
    z = torch.zeros(16, trainer.cfg.z_dim)

    def hole_l1() -> float:
        with torch.no_grad():
            return float(masked_l1(trainer.G(x, m, z), x, m).mean())

    before = hole_l1()
    for _ in range(40):
        stats = trainer.train_step()
    assert {"loss_d", "loss_g", "l1_hole", "l_sim", "l_bal"} <= set(stats)
    assert hole_l1() < 0.85 * before


def test_resume_is_exact_including_the_mask_stream() -> None:
    straight = _tiny_trainer()
    for _ in range(4):
        straight.train_step()
    first = _tiny_trainer()
    for _ in range(2):
        first.train_step()
    state = first.state_dict()
    resumed = _tiny_trainer()
    resumed.load_state_dict(state)
    assert resumed.mask_stream.count == first.mask_stream.count > 0
    for _ in range(2):
        resumed.train_step()
    for a, b in zip(straight.G.parameters(), resumed.G.parameters(), strict=True):
        assert torch.equal(a, b)


def test_masked_projection_ignores_the_hole() -> None:
    torch.manual_seed(0)
    G = Generator(get_preset("tiny")).eval()
    with torch.no_grad():
        target = G(torch.randn(2, G.cfg.z_dim), noise_mode="const")
    m = masks(8, MaskConfig(kind="box"), seed=0, start=0, n=2)
    cfg = ProjectConfig(steps=40, w_avg_samples=256)
    a = project(G, target, cfg, mask=m)
    assert a["latent"].shape == (2, G.n_latent, 2 * G.cfg.w_dim)
    assert a["history"][-1] < 0.3 * a["history"][0]
    scrambled = torch.where(m.expand_as(target) > 0, -target, target)
    b = project(G, scrambled, cfg, mask=m)
    assert torch.equal(a["latent"], b["latent"])  # the hole's pixels never enter the loss
    inp = Inpainter(G, conditional=False, project_cfg=cfg)
    done = inp.complete(target, m)
    visible = m.expand_as(target) == 0
    assert torch.equal(done[visible], target[visible]) and inp.method == "projection-w+"


def test_split_keeps_test_images_out_of_training(tmp_path: Path) -> None:
    imgs = torch.arange(20, dtype=torch.uint8)[:, None, None, None].expand(-1, 3, 8, 8).contiguous()
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(20):
        Image.fromarray(imgs[k].permute(1, 2, 0).numpy()).save(folder / f"{k:02d}.png")
    train, test = split_data(str(folder), 8, seed=3, n_test=5)
    assert isinstance(train, ImageData) and len(train) == 15 and len(test) == 5
    values = lambda d: set(d.images[:, 0, 0, 0].tolist())  # noqa: E731
    assert not values(train) & values(test)
    assert values(split_data(str(folder), 8, seed=9, n_test=5)[1]) == values(test)  # same test set for every seed


def test_unconditional_projection_baseline_trains_on_the_training_split_only(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(24):  # image k is a flat grey of value 10·k + 5, so the sets can be told apart by value
        Image.fromarray(np.full((8, 8, 3), 10 * k + 5, np.uint8)).save(folder / f"{k:02d}.png")
    run = tmp_path / "uncond"
    result = CliRunner().invoke(main, ["inpaint", "train", "--unconditional", "--data", str(folder), "--preset",
                                       "tiny", "--kimg", "0.04", "--run-dir", str(run), "--n-test", "8",
                                       "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "16 training images" in result.output
    inp = Inpainter.load(run)
    assert not inp.conditional and inp.method == "projection-w+"  # no encoder: inpaints by masked projection
    _, test = split_data(str(folder), 8, seed=0, n_test=8)
    reals = set(np.unique(np.asarray(Image.open(run / "reals.png").convert("L"))).tolist()) - {0}  # its data; pad 0
    assert len(reals) == 16 and not reals & set(test.images[:, 0, 0, 0].tolist())


def test_cli_train_complete_eval(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(24):
        img = np.full((8, 8, 3), rng.integers(0, 255, 3), np.uint8)
        img[2:6, 2:6] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(folder / f"p{k}.png")
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["inpaint", "train", "--data", str(folder), "--preset", "tiny", "--kimg", "0.04", "--run-dir", str(run),
            "--n-test", "8", "--rec-weight", "1", "--device", "cpu", "--threads", "1"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (run / "samples" / "final.png").is_file() and json.loads((run / "config.json").read_text())["inpaint"]
    again = runner.invoke(main, args)
    assert again.exit_code == 2 and "--resume" in again.output  # the run-dir policy

    user = tmp_path / "mine.png"
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(user)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:12, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    for how in (["--box", "10,5,10,7"], ["--mask", str(tmp_path / "mask.png")]):
        result = runner.invoke(main, ["inpaint", "complete", "--ckpt", str(run), "--image", str(user), *how,
                                      "--out", str(out), "--grid", str(tmp_path / "g.png")])
        assert result.exit_code == 0, result.output
        assert "sarigan-conditional" in result.output
        with Image.open(out) as im:
            assert im.size == (8, 8)  # the completion at the model resolution
        with Image.open(tmp_path / "g.png") as im:
            assert im.width > 3 * im.height  # input | mask | completion | truth

        # --full-size: the user's image at its own size, with only the hole (inside the model's crop) replaced
        result = runner.invoke(main, ["inpaint", "complete", "--ckpt", str(run), "--image", str(user), *how,
                                      "--out", str(out), "--full-size"])
        assert result.exit_code == 0, result.output
        original, full = np.asarray(Image.open(user)), np.asarray(Image.open(out))
        assert full.shape == original.shape == (20, 30, 3)
        assert (full[mask == 0] == original[mask == 0]).all() and (full[mask > 0] != original[mask > 0]).any()
    result = runner.invoke(main, ["inpaint", "complete", "--ckpt", str(run), "--image", str(user), "--box",
                                  "0,0,12,4", "--out", str(out), "--full-size"])  # x < 5 is outside the crop
    assert result.exit_code == 0 and "20 hole pixels lie outside" in result.output
    full = np.asarray(Image.open(out))
    assert (full[:, :5] == np.asarray(Image.open(user))[:, :5]).all()

    bad = runner.invoke(main, ["inpaint", "complete", "--ckpt", str(run), "--image", str(user), "--box", "1,1,2,2",
                               "--mask", str(tmp_path / "mask.png")])
    assert bad.exit_code == 2 and "exactly one" in bad.output
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    bad = runner.invoke(main, ["inpaint", "complete", "--ckpt", str(run), "--image", str(user), "--mask",
                               str(tmp_path / "small.png")])
    assert bad.exit_code == 2 and "size" in bad.output
    bad = runner.invoke(main, ["inpaint", "complete", "--ckpt", str(run), "--image", str(user), "--mask",
                               str(tmp_path / "nope.png")])
    assert bad.exit_code == 2 and "nope.png" in bad.output

    scores = tmp_path / "scores.json"
    result = runner.invoke(main, ["inpaint", "eval", "--ckpt", str(run), "--n", "8", "--n-test", "8", "--extractor",
                                  "proxy", "--out", str(scores), "--grid", str(tmp_path / "eval.png"),
                                  "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads(scores.read_text())
    assert record["method"] == "sarigan-conditional" and record["n"] == 8
    assert 0 < record["l1_hole"] < 1 and record["psnr"] > 0 and np.isfinite(record["fid"])

    uncond = make_ckpt(tmp_path / "uncond.pt")
    result = runner.invoke(main, ["inpaint", "eval", "--ckpt", str(uncond), "--data", str(folder), "--n", "8",
                                  "--n-test", "8", "--extractor", "none", "--steps", "10", "--out", str(scores),
                                  "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(scores.read_text())["method"] == "projection-w+"
