"""Conditional inpainting with SariGAN (the paper's Figure 10; issue 20), and the training-free projection baseline.

The paper's inpainting architecture is not in the official code nor in the text available offline (spec §3), so
this follows co-modulation (CoModGAN, Zhao et al. 2021), the style-based inpainting design the issue names:

- ``MaskEncoder``: [x·(1 − m), m] (m = 1 on the hole) → residual-free conv pyramid R → 4; the feature map at
  every resolution is a U-Net skip into the synthesis (added to the constant input at 4² and after each
  resolution's upsampling conv, :meth:`sarigan.networks.Generator.synthesis`), and the 4² map flattened through
  one FC is the global code e ∈ R^{2·w_dim}.
- Co-modulation: every per-layer latent w (the mapping network's, style mixing included) is joined with e,
  w' = lrelu(A_join[e; w]) ∈ R^{2·w_dim}; the synthesis reads w' exactly where the unconditional G reads w, so
  with the learned grouping w'_g / w'_c drive Group AdaIN / AdaGN as in spec §1.4 and ``grouping='none'`` is the
  StyleGAN2 (CoModGAN-like) conditional baseline.
- Output: composite x̂ = x·(1 − m) + G(…)·m, so visible pixels pass through exactly.
- Training (one engine, :class:`sarigan.train.Trainer`): D scores real images against composites with the
  non-saturating loss, plus the official SariGAN losses (grouping, MI with Q regressing the w' the synthesis
  read, R1, path length w.r.t. the joined W+); ``rec_weight`` adds an L1 on the hole (0 = CoModGAN: adversarial only).

The projection baseline inverts the visible pixels into an unconditional G's W+ (:func:`sarigan.project.project`
with a mask on the loss) and composites the same way.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from neurips20_common import CheckpointManager, UserError, load_checkpoint, select_device
from torch import nn

from sarigan.config import SariGANConfig, get_preset
from sarigan.data import ImageData, load_data, load_shapes, save_grid, to_uint8
from sarigan.masks import MaskConfig, MaskStream, masks
from sarigan.metrics.inpaint import completion_scores, masked_l1
from sarigan.networks import Generator
from sarigan.ops import ConvLayer, EqualLinear
from sarigan.project import ProjectConfig, project
from sarigan.train import Fakes, Trainer, z_from_seeds

TEST_SHAPES_SEED = 999_983  # held-out shapes are drawn from their own seed (training sets use the run's seed)
TEST_MASK_SEED = 20_20  # evaluation masks: the same for every model and seed
GRID_MASK_SEED = 77


@dataclass
class InpaintConfig:
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)
    rec_weight: float = 0.0  # λ of L1 on the hole (raw output); 0 = CoModGAN's adversarial-only objective
    n_test: int = 1000  # held-out images (a fresh shapes draw, or carved from digits / a folder before training)
    # True: train the projection baseline's plain (unconditional) SariGAN on the same training split, so it never
    # sees the held-out images (plain `sarigan train` uses every image of digits / a folder)
    unconditional: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.mask, dict):
            self.mask = MaskConfig(**self.mask)
        if self.rec_weight < 0:
            raise UserError(f"rec_weight must be ≥ 0, got {self.rec_weight}")
        if self.n_test < 1:
            raise UserError(f"n_test must be ≥ 1, got {self.n_test}")


# ---------------------------------------------------------------------------------------------------------------
# Data: the training images and a held-out test set that no model (nor the projection's G) trains on
# ---------------------------------------------------------------------------------------------------------------
def split_data(spec: str, resolution: int, seed: int, n_test: int) -> tuple[ImageData, ImageData]:
    """(train, test). Shapes: train = the run's draw (seed), test = n_test shapes from TEST_SHAPES_SEED. Digits or a
    folder: a fixed permutation (seed 0, whatever the run's seed) puts the last n_test images in test."""
    if spec == "shapes":
        return load_data(spec, resolution, seed=seed), load_shapes(resolution, n=n_test, seed=TEST_SHAPES_SEED)
    data = load_data(spec, resolution, seed=seed)
    if n_test >= len(data):
        raise UserError(f"{data.name} has {len(data)} images: n_test={n_test} leaves none to train on")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:-n_test], perm[-n_test:]

    def take(idx: torch.Tensor) -> ImageData:
        return ImageData(data.images[idx], data.name, {k: v[idx.numpy()] for k, v in data.labels.items()})
    return take(tr), take(te)


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------
class MaskEncoder(nn.Module):
    """[x·(1 − m), m] → skips {res: [B, C_res, res, res]} for res = R … 4, and e ∈ R^{2·w_dim}."""

    def __init__(self, cfg: SariGANConfig) -> None:
        super().__init__()
        res = cfg.resolutions()[::-1]  # R, …, 4
        self.from_rgb = ConvLayer(4, cfg.channels(res[0]), 1)
        self.convs = nn.ModuleList(ConvLayer(cfg.channels(r), cfg.channels(r), 3) for r in res)
        self.downs = nn.ModuleList(ConvLayer(cfg.channels(hi), cfg.channels(lo), 3, downsample=True)
                                   for hi, lo in itertools.pairwise(res))
        self.resolutions = res
        self.to_code = EqualLinear(cfg.channels(4) * 16, 2 * cfg.w_dim, activate=True)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        h = self.from_rgb(torch.cat([image * (1 - mask), mask], dim=1))
        skips: dict[int, torch.Tensor] = {}
        for k, res in enumerate(self.resolutions):
            h = self.convs[k](h)
            skips[res] = h
            if k < len(self.downs):
                h = self.downs[k](h)
        return self.to_code(h.flatten(1)), skips


def composite(image: torch.Tensor, raw: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Visible pixels from ``image``, the hole from ``raw`` (mask = 1 on the hole)."""
    return image * (1 - mask) + raw * mask


class InpaintGenerator(Generator):
    """SariGAN (or StyleGAN2 with grouping='none') generator conditioned by co-modulation and encoder skips."""

    def __init__(self, cfg: SariGANConfig) -> None:
        super().__init__(cfg)
        self.encoder = MaskEncoder(cfg)
        self.join = EqualLinear(4 * cfg.w_dim, 2 * cfg.w_dim, activate=True)  # w' = lrelu(A[e; w])

    def co_modulate(self, ws: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """ws [B, 2d] or [B, n_latent, 2d] joined with e [B, 2d] → w' of the same shape."""
        if ws.ndim == 2:
            return self.join(torch.cat([code, ws], dim=1))
        e = code[:, None].expand(-1, ws.shape[1], -1)
        return self.join(torch.cat([e, ws], dim=2).flatten(0, 1)).view(ws.shape)

    def inpaint(self, image: torch.Tensor, mask: torch.Tensor, ws: torch.Tensor, noise_mode: str = "random"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ (composite, raw output, Σ L_sim, Σ L_bal, e). ws: the mapping's w or W+ (before joining)."""
        code, skips = self.encoder(image, mask)
        raw, l_sim, l_bal = self.synthesis(self.co_modulate(ws, code), noise_mode, skips)
        return composite(image, raw, mask), raw, l_sim, l_bal, code

    def forward(self, image: torch.Tensor, mask: torch.Tensor, z: torch.Tensor | None = None,  # type: ignore[override]
                psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        """Completed images (visible pixels exact). z: one latent per image (random when None)."""
        if z is None:
            z = torch.randn(image.shape[0], self.cfg.z_dim, device=image.device)
        ws = self.mapping(z)
        if psi != 1.0:
            ws = self.truncate(ws, psi)
        return self.inpaint(image, mask, ws, noise_mode)[0]


# ---------------------------------------------------------------------------------------------------------------
# Training: the shared engine with conditional fakes
# ---------------------------------------------------------------------------------------------------------------
class InpaintTrainer(Trainer):
    """:class:`Trainer` whose fakes are completions of the real batch under a seeded mask stream."""

    def __init__(self, cfg: SariGANConfig, icfg: InpaintConfig, data: ImageData, device: torch.device | str = "cpu",
                 seed: int = 0, grid_images: torch.Tensor | None = None) -> None:
        # The unconditional Fréchet trend line samples G(z); completions are scored by `sarigan inpaint eval`.
        super().__init__(cfg.replace(fd_every=0), data, device, seed)
        self.icfg = icfg
        self.mask_stream = MaskStream(cfg.resolution, icfg.mask, seed=1_000 + 7919 * self.rank + seed)
        grid = grid_images if grid_images is not None else data.images[:8]
        self.grid_images = grid.float() / 127.5 - 1
        self.grid_masks = masks(cfg.resolution, icfg.mask, GRID_MASK_SEED, 0, grid.shape[0])

    def build_generator(self) -> Generator:
        return InpaintGenerator(self.cfg)

    def generate(self, batch: int, real: torch.Tensor) -> Fakes:
        real = real.detach()[:batch]
        mask = self.mask_stream.next(batch).to(self.device)
        ws, target, w1 = self.sample_ws(batch)
        code, skips = self.G.encoder(real, mask)
        joined = self.G.co_modulate(ws, code)
        raw, l_sim, l_bal = self.G.synthesis(joined, skips=skips)
        image = composite(real, raw, mask)
        if target is not None:  # Q regresses the w' the synthesis read (spec §1.6: the w after the mapping)
            target = self.G.co_modulate(target, code)
        losses = {}
        if self.icfg.rec_weight > 0:
            losses["l1_hole"] = (self.icfg.rec_weight, masked_l1(raw, real, mask).mean())
        return Fakes(image, l_sim, l_bal, target, w1, joined, losses)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inpaint": dataclasses.asdict(self.icfg), "mask_count": self.mask_stream.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.mask_stream.count = int(state["mask_count"])

    @torch.no_grad()
    def sample_grid(self, path: Path, seeds: list[int], psi: float = 1.0) -> Path:
        """Rows = fixed training images: input | mask | completion (G_ema, z from seed k) | truth."""
        x, m = self.grid_images.to(self.device), self.grid_masks.to(self.device)
        z = z_from_seeds(seeds[: x.shape[0]], self.cfg.z_dim).to(self.device)
        return completion_grid(x, m, self.G_ema(x, m, z, psi=psi), path)


def completion_grid(images: torch.Tensor, mask: torch.Tensor, completed: torch.Tensor, path: str | Path,
                    rows: int | None = None) -> Path:
    """PNG: one row per image, columns input (hole grey) | mask (white hole) | completion | truth; all in [−1, 1]."""
    n = images.shape[0] if rows is None else min(rows, images.shape[0])
    images, mask, completed = images[:n].cpu(), mask[:n].cpu(), completed[:n].cpu()
    cells = torch.stack([images * (1 - mask), (mask * 2 - 1).expand_as(images), completed, images], dim=1)
    return save_grid(cells.flatten(0, 1), path, nrow=4, upscale=max(1, 64 // images.shape[-1]))


# ---------------------------------------------------------------------------------------------------------------
# Inference API: conditional model or projection, one interface
# ---------------------------------------------------------------------------------------------------------------
def _checkpoint_path(ckpt: str | Path) -> Path:
    path = Path(ckpt)
    if path.is_dir():
        latest = CheckpointManager(path / "checkpoints" if (path / "checkpoints").is_dir() else path).latest()
        if latest is None:
            raise UserError(f"{path} holds no checkpoint; pass a checkpoint file or a run dir that has one")
        return Path(latest)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    return path


class Inpainter:
    """Completes images with a conditional run (``inpaint`` in its checkpoint) or, given an unconditional run,
    by masked projection into its W+.

    >>> inp = Inpainter.load("runs/sarigan/inpaint-shapes-cpu16")
    >>> out = inp.complete(images, masks)   # [B, 3, R, R] in [−1, 1], masks [B, 1, R, R] with 1 = hole
    """

    def __init__(self, G: Generator, conditional: bool, data: str | None = None,
                 project_cfg: ProjectConfig | None = None, source: str = "") -> None:
        self.G, self.conditional, self.data, self.source = G, conditional, data, source
        self.project_cfg = project_cfg or ProjectConfig(steps=200)
        self.device = next(G.parameters()).device

    @property
    def method(self) -> str:
        if self.conditional:
            return "stylegan2-conditional" if self.G.cfg.grouping == "none" else "sarigan-conditional"
        return f"projection-{self.project_cfg.space}"

    @classmethod
    def load(cls, ckpt: str | Path, device: torch.device | str = "cpu", ema: bool = True,
             project_cfg: ProjectConfig | None = None) -> Inpainter:
        path = _checkpoint_path(ckpt)
        state = load_checkpoint(path)
        if "config" not in state or ("G_ema" not in state and "G" not in state):
            raise UserError(f"{path} is not a sarigan checkpoint (no config / generator weights)")
        cfg = SariGANConfig.from_dict(state["config"])
        conditional = "inpaint" in state
        G = InpaintGenerator(cfg) if conditional else Generator(cfg)
        try:
            G.load_state_dict(state["G_ema" if ema and "G_ema" in state else "G"])
        except RuntimeError as exc:
            raise UserError(f"{path}: generator weights do not match its config ({str(exc).splitlines()[0]})") from None
        G = G.to(device).eval().requires_grad_(False)
        return cls(G, conditional, state.get("data"), project_cfg, str(path))

    def complete(self, images: torch.Tensor, mask: torch.Tensor, seed: int = 0, psi: float = 1.0,
                 batch: int = 256) -> torch.Tensor:
        """Completed images (float [−1, 1], on the CPU); visible pixels are the input's, exactly."""
        res = self.G.cfg.resolution
        if images.ndim != 4 or images.shape[1:] != (3, res, res) or mask.shape != (images.shape[0], 1, res, res):
            raise UserError(f"expected images [B, 3, {res}, {res}] and masks [B, 1, {res}, {res}], got "
                            f"{tuple(images.shape)} and {tuple(mask.shape)}")
        out = []
        for lo in range(0, images.shape[0], batch):
            x, m = images[lo: lo + batch].to(self.device), mask[lo: lo + batch].to(self.device).float()
            if self.conditional:
                g = torch.Generator().manual_seed(seed * 1_000_003 + lo)
                z = torch.randn(x.shape[0], self.G.cfg.z_dim, generator=g).to(self.device)
                with torch.no_grad():
                    out.append(self.G(x, m, z, psi=psi).cpu())
            else:
                result = project(self.G, x, self.project_cfg, seed=seed + lo, mask=m)
                out.append(composite(x.cpu(), result["image"], m.cpu()))
        return torch.cat(out)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: the same held-out images and masks for every method
# ---------------------------------------------------------------------------------------------------------------
def evaluation_set(data_spec: str, resolution: int, icfg: InpaintConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n held-out images (uint8) and their masks (stream TEST_MASK_SEED): identical for every method."""
    _, test = split_data(data_spec, resolution, seed=0, n_test=icfg.n_test)
    if n > len(test):
        raise UserError(f"--n {n} exceeds the {len(test)} held-out images (n_test)")
    return test.images[:n], masks(resolution, icfg.mask, TEST_MASK_SEED, 0, n)


def evaluate(inpainter: Inpainter, data_spec: str, icfg: InpaintConfig, n: int, extractor: Any | None,
             seed: int = 0, grid: str | Path | None = None, log: Callable[[str], None] | None = None
             ) -> dict[str, Any]:
    """Complete the held-out set and score it (hole L1, PSNR, FID/KID vs the truths); optional 8-row grid."""
    import time

    t0 = time.perf_counter()
    truths, mask = evaluation_set(data_spec, inpainter.G.cfg.resolution, icfg, n)
    done = inpainter.complete(truths.float() / 127.5 - 1, mask, seed=seed)
    if log:
        log(f"completed {n} images with {inpainter.method} in {time.perf_counter() - t0:.0f} s")
    scores = completion_scores(to_uint8(done), truths, mask, extractor, seed=seed)
    if grid:
        completion_grid(truths.float() / 127.5 - 1, mask, done, grid, rows=8)
    return {"method": inpainter.method, "ckpt": inpainter.source, "data": data_spec, "seed": seed,
            "masks": {**dataclasses.asdict(icfg.mask), "seed": TEST_MASK_SEED},
            "project": dataclasses.asdict(inpainter.project_cfg) if not inpainter.conditional else None,
            "seconds": time.perf_counter() - t0, **scores}


def paste_back(original: np.ndarray, done: torch.Tensor, hole: np.ndarray) -> tuple[np.ndarray, int]:
    """The completion at the user's own size: ``original`` uint8 [H, W, 3]; ``done`` [1, 3, R, R] in [−1, 1], the
    model's view of it (shorter side resized to R, centre crop: :func:`sarigan.data._prepare`); ``hole`` bool
    [H, W] at full size. Hole pixels inside the model's crop take the completion resized back (Lanczos), every
    other pixel stays the user's. Returns (image, hole pixels outside the crop, which the model never saw)."""
    from PIL import Image

    h, w = hole.shape
    res = done.shape[-1]
    k = res / min(w, h)
    nw, nh = max(res, round(w * k)), max(res, round(h * k))
    left, top = (nw - res) // 2, (nh - res) // 2
    x0, y0, x1, y1 = (round(v / k) for v in (left, top, left + res, top + res))
    x1, y1 = min(x1, w), min(y1, h)
    patch = Image.fromarray(to_uint8(done[0]).permute(1, 2, 0).cpu().numpy()).resize((x1 - x0, y1 - y0),
                                                                                    Image.LANCZOS)
    inside = np.zeros_like(hole)
    inside[y0:y1, x0:x1] = True
    out = original.copy()
    fill = hole & inside
    out[y0:y1, x0:x1][fill[y0:y1, x0:x1]] = np.asarray(patch)[fill[y0:y1, x0:x1]]
    return out, int((hole & ~inside).sum())


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """One [3, H, W] (or [1, 3, H, W]) image in [−1, 1] as a plain PNG of H×W pixels (atomic write)."""

    return save_png(to_uint8(image.reshape(-1, *image.shape[-3:])[0]).permute(1, 2, 0).cpu().numpy(), path)


def save_png(arr: np.ndarray, path: str | Path) -> Path:
    """uint8 [H, W, 3] as a PNG (atomic write)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    tmp.replace(path)
    return path


def write_json(record: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    tmp.replace(path)



def train_inpainting(data: str = "shapes", preset: str = "cpu16", run_dir: str | Path | None = None, *,
                     resume: bool = False, force: bool = False, overrides: dict[str, Any] | None = None,
                     icfg: InpaintConfig | None = None, seed: int = 0, device: str = "auto",
                     threads: str | int = "auto", log: Callable[[str], None] = print) -> Trainer:
    """Train (or with ``resume`` continue exactly) a conditional model on the training split of ``data``; with
    ``icfg.unconditional`` the plain SariGAN on that split instead (the projection baseline's G).

    ``overrides``: SariGAN config fields by name (``{"grouping": "none"}``); ``icfg``: masks, rec_weight, n_test.
    On resume the run's own configs, data and seed are used and only ``kimg`` / bookkeeping fields may change.
    """
    from neurips20_common.cli import apply_set, prepare_run_dir

    from sarigan.api import RESUME_SETTABLE, set_threads

    overrides = dict(overrides or {})
    dev = select_device(device)
    set_threads(threads, dev)
    state = None
    if resume:
        if run_dir is None:
            raise UserError("--resume needs the --run-dir to continue")
        run = prepare_run_dir(run_dir, resume=True)
        saved = run.read_config()
        if "inpaint" not in saved:
            raise UserError(f"{run.path} is not an inpainting run (no 'inpaint' in its config.json)")
        bad = sorted(k for k in overrides if k not in RESUME_SETTABLE)
        if bad:
            raise UserError(f"{bad[0]}: on --resume only {', '.join(RESUME_SETTABLE)} may change")
        cfg = apply_set(SariGANConfig.from_dict(saved["config"]), overrides)
        icfg, data, seed = InpaintConfig(**saved["inpaint"]), saved["data"], saved["seed"]
        preset = saved.get("preset", preset)
        latest = CheckpointManager(run.checkpoints).require_latest("start it again with --force")
        state = load_checkpoint(latest, map_location=dev)
    else:
        cfg = apply_set(get_preset(preset), overrides)
        icfg = icfg or InpaintConfig()
        path = run_dir or Path("runs") / "sarigan" / f"inpaint-{Path(data).name}-{preset}-{cfg.grouping}-seed{seed}"
    train_set, _ = split_data(data, cfg.resolution, seed, icfg.n_test)  # before the run dir: bad data leaves nothing
    if not resume:
        run = prepare_run_dir(path, force=force)
    run.write_config({"config": cfg, "inpaint": dataclasses.asdict(icfg), "data": data, "seed": seed,
                      "preset": preset, "device": str(dev)})
    trainer = Trainer(cfg, train_set, dev, seed) if icfg.unconditional else InpaintTrainer(cfg, icfg, train_set, dev,
                                                                                              seed)
    if state is not None:
        trainer.load_state_dict(state)
        log(f"resumed at iteration {trainer.step} ({trainer.nimg / 1000:.1f} kimg)")
    log(f"inpaint{' (unconditional G for projection)' if icfg.unconditional else ''}: {cfg.grouping} grouping, "
        f"{cfg.resolution}², batch {cfg.batch}, {len(train_set)} training images from {train_set.name}, "
        f"masks {icfg.mask.kind} {icfg.mask.coverage_min:g}–{icfg.mask.coverage_max:g}, "
        f"rec_weight {icfg.rec_weight:g} on {dev} ({torch.get_num_threads()} threads) → {run.path}")
    trainer.fit(cfg.kimg, run, extra={"data": data}, log=log)
    log(f"done: {trainer.step} iterations; completion grids in {run.file('samples')}")
    return trainer
