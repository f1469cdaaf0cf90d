"""Training images, all offline (spec §5.2): procedural shapes with known factors, scikit-learn's bundled digits,
or any folder / zip of PNG and JPEG files. Images are held in memory as uint8 [N, 3, R, R].
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from neurips20_common import UserError
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SHAPES = ("circle", "square", "triangle", "plus")


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 [N, 3, R, R]
    name: str
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # factor name → [N] values

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]


# ---------------------------------------------------------------------------------------------------------------
# Procedural shapes: one object on a plain background, six independent factors
# ---------------------------------------------------------------------------------------------------------------
def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV → RGB in [0, 1]; inputs of any equal shape, output [..., 3]."""
    i = np.floor(h * 6.0) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros((*h.shape, 3))
    for k, (r, g, b) in enumerate(table):
        m = i == k
        out[m] = np.stack([r[m], g[m], b[m]], axis=-1)
    return out


def _shape_mask(kind: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-tests in object coordinates (u, v ∈ [−1, 1] is the object's box). kind: [n, 1, 1]."""
    circle = u**2 + v**2 <= 1.0
    square = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    triangle = (v <= 0.8) & (v >= -0.9 + 1.8 * np.abs(u))
    plus = ((np.abs(u) <= 0.32) | (np.abs(v) <= 0.32)) & (np.abs(u) <= 0.95) & (np.abs(v) <= 0.95)
    return np.select([kind == 0, kind == 1, kind == 2, kind == 3], [circle, square, triangle, plus], False)


def render_shapes(factors: dict[str, np.ndarray], resolution: int, supersample: int | None = None) -> np.ndarray:
    """Draw images from factor values (anti-aliased by supersampling). Returns uint8 [N, 3, R, R]."""
    n = len(factors["shape"])
    supersample = supersample or max(2, 64 // resolution)
    s = resolution * supersample
    grid = (np.arange(s) + 0.5) / s
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    out = np.empty((n, 3, resolution, resolution), dtype=np.uint8)
    for lo in range(0, n, 256):
        sl = slice(lo, min(lo + 256, n))
        f = {k: factors[k][sl][:, None, None] for k in ("x", "y", "scale")}
        u = (gx[None] - f["x"]) / f["scale"]
        v = (gy[None] - f["y"]) / f["scale"]
        mask = _shape_mask(factors["shape"][sl][:, None, None], u, v).astype(np.float64)
        m = mask.reshape(-1, resolution, supersample, resolution, supersample).mean(axis=(2, 4))[..., None]
        fg = hsv_to_rgb(factors["hue"][sl], np.full(m.shape[0], 0.85), np.full(m.shape[0], 0.95))
        bg = hsv_to_rgb(factors["bg_hue"][sl], np.full(m.shape[0], 0.45), np.full(m.shape[0], 0.3))
        img = m * fg[:, None, None, :] + (1 - m) * bg[:, None, None, :]
        out[sl] = np.round(img * 255).clip(0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
    return out


def sample_shape_factors(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Independent factors: shape (4 kinds), hue, x, y (object centre, fraction of width), scale, bg_hue."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.16, 0.3, n)
    return {
        "shape": rng.integers(0, len(SHAPES), n),
        "hue": rng.uniform(0.0, 1.0, n),
        "x": rng.uniform(0.2, 0.8, n),
        "y": rng.uniform(0.2, 0.8, n),
        "scale": scale,
        "bg_hue": rng.uniform(0.0, 1.0, n),
    }


def load_shapes(resolution: int, n: int = 20000, seed: int = 0) -> ImageData:
    factors = sample_shape_factors(n, seed)
    return ImageData(torch.from_numpy(render_shapes(factors, resolution)), "shapes", factors)


# ---------------------------------------------------------------------------------------------------------------
# scikit-learn digits (1,797 8×8 grey digits, bundled in the wheel)
# ---------------------------------------------------------------------------------------------------------------
def load_digits(resolution: int) -> ImageData:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    imgs = []
    for a in bunch.images:
        im = Image.fromarray(np.uint8(np.round(a / 16.0 * 255))).resize((resolution, resolution), Image.BILINEAR)
        imgs.append(np.asarray(im))
    grey = torch.from_numpy(np.stack(imgs))[:, None]
    return ImageData(grey.expand(-1, 3, -1, -1).contiguous(), "digits", {"digit": bunch.target.copy()})


# ---------------------------------------------------------------------------------------------------------------
# Folder or zip of PNG / JPEG: resize the shorter side to R, centre crop
# ---------------------------------------------------------------------------------------------------------------
def _prepare(im: Image.Image, resolution: int) -> np.ndarray:
    im = im.convert("RGB")
    w, h = im.size
    k = resolution / min(w, h)
    nw, nh = max(resolution, round(w * k)), max(resolution, round(h * k))
    im = im.resize((nw, nh), Image.LANCZOS)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return np.asarray(im.crop((left, top, left + resolution, top + resolution))).transpose(2, 0, 1)


def load_image_folder(path: str | Path, resolution: int) -> ImageData:
    path = Path(path)
    arrays: list[np.ndarray] = []
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        for f in files:
            try:
                with Image.open(f) as im:
                    arrays.append(_prepare(im, resolution))
            except (UnidentifiedImageError, OSError) as exc:
                raise UserError(f"{f}: not a readable image ({exc}); remove or replace it") from None
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in IMAGE_SUFFIXES)
            for name in names:
                try:
                    with Image.open(io.BytesIO(zf.read(name))) as im:
                        arrays.append(_prepare(im, resolution))
                except (UnidentifiedImageError, OSError) as exc:
                    raise UserError(f"{path}:{name}: not a readable image ({exc}); remove or replace it") from None
    elif path.exists():
        raise UserError(f"{path} is neither a folder nor a zip file; pass a folder or zip of PNG/JPEG images")
    else:
        raise UserError(f"data {str(path)!r} is not 'shapes', 'digits', or an existing folder / zip of images")
    if not arrays:
        raise UserError(f"{path} holds no .png/.jpg/.jpeg images")
    return ImageData(torch.from_numpy(np.stack(arrays)), path.name)


def load_data(spec: str, resolution: int, seed: int = 0) -> ImageData:
    """``shapes``, ``digits``, or a path to a folder / zip of images."""
    if spec == "shapes":
        return load_shapes(resolution, seed=seed)
    if spec == "digits":
        return load_digits(resolution)
    return load_image_folder(spec, resolution)


# ---------------------------------------------------------------------------------------------------------------
# Batches: sampling with replacement from one torch.Generator (its state is checkpointed: exact resume)
# ---------------------------------------------------------------------------------------------------------------
class BatchSampler:
    def __init__(self, data: ImageData, batch: int, flip: bool, generator: torch.Generator) -> None:
        self.data, self.batch, self.flip, self.generator = data, batch, flip, generator

    def next(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """A batch as float in [−1, 1] on ``device``, randomly mirrored left-right."""
        idx = torch.randint(len(self.data), (self.batch,), generator=self.generator)
        x = self.data.images[idx].float() / 127.5 - 1.0
        if self.flip:
            mirror = torch.rand(self.batch, generator=self.generator) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(3), x)
        return x.to(device, non_blocking=True)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[−1, 1] float → uint8 (same shape)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, upscale: int = 1) -> Path:
    """Write a PNG grid of [N, 3, H, W] images in [−1, 1] (Pillow; no torchvision)."""
    imgs = to_uint8(images).cpu()
    n, c, h, w = imgs.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    pad = 1
    canvas = torch.zeros(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad, dtype=torch.uint8)
    for k in range(n):
        r, q = divmod(k, nrow)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[k]
    im = Image.fromarray(canvas.permute(1, 2, 0).numpy())
    if upscale > 1:
        im = im.resize((im.width * upscale, im.height * upscale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    im.save(tmp, format="PNG")
    tmp.replace(path)
    return path
