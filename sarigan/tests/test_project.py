"""Projection into W / W+ recovers an image the generator can make, and the noise regularizer behaves."""

from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image
from test_groups import make_ckpt

from sarigan.cli import main
from sarigan.config import get_preset
from sarigan.networks import Generator
from sarigan.project import ProjectConfig, noise_regularization, project


def test_projection_fits_a_generated_image() -> None:
    torch.manual_seed(0)
    G = Generator(get_preset("tiny")).eval()
    with torch.no_grad():
        target = G(torch.randn(1, G.cfg.z_dim), noise_mode="const")
    for space, shape in (("w+", (G.n_latent, 2 * G.cfg.w_dim)), ("w", (2 * G.cfg.w_dim,))):
        out = project(G, target, ProjectConfig(steps=60, space=space, w_avg_samples=256))
        assert out["latent"].shape == shape
        assert out["history"][-1] < 0.2 * out["history"][0]
        assert len(out["noises"]) == 1 + len(G.styled_layers())


def test_noise_regularization_penalizes_correlated_noise() -> None:
    g = torch.Generator().manual_seed(0)
    white = torch.randn(1, 1, 16, 16, generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 18, 18, generator=g), 3, 1)
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert noise_regularization([smooth]) > 20 * noise_regularization([white])


def test_cli_project_then_edit_the_projection(tmp_path: Path) -> None:
    ckpt = make_ckpt(tmp_path / "ckpt.pt")
    img = np.zeros((20, 20, 3), np.uint8)
    img[5:15, 5:15] = (200, 40, 40)
    Image.fromarray(img).save(tmp_path / "x.png")
    out = tmp_path / "proj"
    result = CliRunner().invoke(main, ["project", "--ckpt", str(ckpt), "--image", str(tmp_path / "x.png"),
                                       "--steps", "20", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (out / "latent.pt").is_file() and (out / "target_vs_projected.png").is_file()
    result = CliRunner().invoke(main, ["edit", "--ckpt", str(ckpt), "--latent", str(out / "latent.pt"),
                                       "--layer", "0", "--group", "1", "--out", str(tmp_path / "e.png")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "e.png") as im:
        assert im.width > 4 * im.height  # one row, five columns
    result = CliRunner().invoke(main, ["project", "--ckpt", str(ckpt), "--image", str(tmp_path / "missing.png")])
    assert result.exit_code != 0 and "missing.png" in result.output
