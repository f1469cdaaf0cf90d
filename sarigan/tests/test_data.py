import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from neurips20_common import UserError
from PIL import Image

from sarigan.data import BatchSampler, load_data, load_digits, load_image_folder, load_shapes, save_grid


def test_shapes_have_factors_and_are_deterministic() -> None:
    a, b = load_shapes(16, n=64, seed=3), load_shapes(16, n=64, seed=3)
    assert a.images.shape == (64, 3, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images)
    assert set(a.labels) == {"shape", "hue", "x", "y", "scale", "bg_hue"}
    # the object is where its factors say: the pixel at (x, y) differs from the corner (background)
    for i in range(8):
        cx, cy = int(a.labels["x"][i] * 16), int(a.labels["y"][i] * 16)
        assert (a.images[i, :, cy, cx].int() - a.images[i, :, 0, 0].int()).abs().sum() > 30


def test_digits_are_bundled() -> None:
    d = load_digits(16)
    assert d.images.shape == (1797, 3, 16, 16) and set(np.unique(d.labels["digit"])) == set(range(10))


def _write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for i, size in enumerate([(40, 30), (20, 50), (64, 64)]):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    Image.fromarray(rng.integers(0, 255, (33, 33, 3), dtype=np.uint8)).save(folder / "im3.jpg")


def test_folder_and_zip(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    _write_images(folder)
    d = load_image_folder(folder, 16)
    assert d.images.shape == (4, 3, 16, 16)
    files = sorted(folder.iterdir())
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in files:
            zf.write(p, p.name)
    z = load_data(str(zpath), 16)
    assert torch.equal(z.images, d.images)


def test_bad_inputs_raise_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not shapes, digits, lfw"):
        load_data(str(tmp_path / "missing"), 16)
    with pytest.raises(UserError, match=r"no \.png"):
        load_image_folder(tmp_path, 16)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"broken\.png"):
        load_image_folder(tmp_path, 16)


def test_sampler_flip_and_range(tmp_path: Path) -> None:
    d = load_shapes(8, n=32)
    g = torch.Generator().manual_seed(0)
    x = BatchSampler(d, 16, flip=True, generator=g).next()
    assert x.shape == (16, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(BatchSampler(d, 16, flip=True, generator=g2).next(), x)
    path = save_grid(x, tmp_path / "grid.png", upscale=2)
    im = Image.open(io.BytesIO(path.read_bytes()))
    assert im.size == ((4 * 9 + 1) * 2, (4 * 9 + 1) * 2)
