"""Command line interface: a thin click layer over the library (parse, build a config, call one function).

Exit codes (common-utils conventions): 0 ok, 1 a bug (traceback), 2 a user error (one line), 3 training diverged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import torch
from neurips20_common import UserError, load_checkpoint, select_device
from neurips20_common.cli import (
    Group,
    apply_set,
    parse_set,
    run_dir_options,
    seed_option,
    tensorboard_option,
)

from sarigan import __version__
from sarigan.api import finish_process, load_generator, set_threads
from sarigan.api import train as run_training
from sarigan.config import GROUPINGS, PRESETS, SariGANConfig, get_preset
from sarigan.data import DATASETS, load_data, save_grid
from sarigan.train import z_from_seeds


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sarigan")
def main() -> None:
    """SariGAN: semantic-aware normalization for GANs (NeurIPS 2020), StyleGAN2 in pure PyTorch."""


@main.command()
@click.option("--data", "data_spec", default="shapes", show_default=True,
              help=f"{' | '.join(DATASETS)} | PATH to a folder or zip of PNG/JPEG images")
@click.option("--preset", default="cpu16", show_default=True, type=click.Choice(list(PRESETS)))
@click.option("--kimg", type=float, default=None, help="Train until this many thousand images (default: preset).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Default: runs/sarigan/<data>-<preset>.")
@run_dir_options
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@seed_option
@click.option("--grouping", type=click.Choice(GROUPINGS), default=None, help="learned | uniform | none (StyleGAN2)")
@click.option("--groups", type=int, default=None, help="Groups per grouped layer (G).")
@click.option("--mi-weight", type=float, default=None, help="MI loss weight on D and G (official 20).")
@click.option("--mi-on-mixed/--no-mi-on-mixed", default=None, help="MI on style-mixed batches too (official: no).")
@click.option("--swap-prob", type=float, default=None,
              help="P(group/channel swap | mixing); official 0 (dead branch), 0.5 the likely intent.")
@click.option("--batch", type=int, default=None, help="Total batch over all processes.")
@click.option("--augment", type=click.Choice(["none", "ada"]), default=None,
              help="ADA-style augmentation of reals and fakes for small data sets (default: preset, none).")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast on CUDA.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other config field.")
@click.option("--threads", default="auto", show_default=True, help="CPU threads: auto or N.")
@tensorboard_option
def train(data_spec: str, preset: str, kimg: float | None, run_dir: str | None, resume: bool, force: bool,
          device: str, seed: int, grouping: str | None, groups: int | None, mi_weight: float | None,
          mi_on_mixed: bool | None, swap_prob: float | None, batch: int | None, augment: str | None,
          amp: bool | None, sets: tuple[str, ...], threads: str, tensorboard: bool) -> None:
    """Train SariGAN / StyleGAN2 on shapes, digits, lfw or an image folder / zip (--resume continues exactly)."""
    given = dict(grouping=grouping, groups=groups, mi_weight=mi_weight, mi_on_mixed=mi_on_mixed,
                 swap_prob=swap_prob, batch=batch, augment=augment, amp=amp, kimg=kimg)
    overrides = {**{k: v for k, v in given.items() if v is not None}, **parse_set(sets)}
    _, world = run_training(data_spec, preset, run_dir, resume=resume, force=force, overrides=overrides, seed=seed,
                            device=device, threads=threads, tensorboard=tensorboard, log=click.echo)
    finish_process(world)


def _parse_seeds(spec: str) -> list[int]:
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            lo, sep, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise click.UsageError(f"--seeds {spec!r}: use a list and/or ranges like 0-63 or 1,5,9-12") from None
    if not seeds or any(s < 0 for s in seeds):
        raise click.UsageError(f"--seeds {spec!r}: give one or more seeds ≥ 0")
    return seeds


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file, a run dir, or a .safetensors "
              "export.")
@click.option("--seeds", default="0-63", show_default=True)
@click.option("--trunc", "psi", type=float, default=1.0, show_default=True, help="Truncation ψ towards w̄.")
@click.option("--trunc-cutoff", type=click.IntRange(min=1), default=None,
              help="Truncate only the first N per-layer latents.")
@click.option("--noise", type=click.Choice(["const", "random"]), default="const", show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="The PNG grid (default: grid.png, or <outdir>/grid.png with --outdir).")
@click.option("--outdir", default=None, type=click.Path(file_okay=False),
              help="Also write one PNG per seed, <outdir>/seed0000.png (stylegan3's naming).")
@click.option("--device", default="auto", show_default=True)
@click.option("--raw", is_flag=True, help="Use the training G instead of the EMA generator.")
def generate(ckpt: str, seeds: str, psi: float, trunc_cutoff: int | None, noise: str, out: str | None,
             outdir: str | None, device: str, raw: bool) -> None:
    """Sample a PNG grid (and per-seed PNGs) from a checkpoint: fixed seeds, optional truncation."""
    from sarigan.data import save_images

    seed_list = _parse_seeds(seeds)
    G = load_generator(ckpt, select_device(device), ema=not raw)
    images = G.generate(seed_list, psi=psi, cutoff=trunc_cutoff, noise_mode=noise)
    grid = Path(out) if out else (Path(outdir) / "grid.png" if outdir else Path("grid.png"))
    save_grid(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1, grid,
              upscale=max(1, 128 // G.resolution))
    msg = f"wrote {len(seed_list)} samples (ψ={psi}) from {G.meta.get('checkpoint', ckpt)} to {grid}"
    if outdir:
        save_images(images, Path(outdir), [f"seed{s:04d}.png" for s in seed_list])
        msg += f" and {outdir}/seed{seed_list[0]:04d}.png …"
    click.echo(msg)


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file or a run dir.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="<name>.safetensors (+ <name>.json).")
@click.option("--raw", is_flag=True, help="Export the training G instead of the EMA generator.")
def export(ckpt: str, out: str, raw: bool) -> None:
    """Weights-only export of the generator: safetensors (tensors only) + a small JSON (config, provenance)."""
    G = load_generator(ckpt, "cpu", ema=not raw)
    weights, side = G.save_weights(out)
    click.echo(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB) and {side}; "
               f"load with sarigan.load_generator({str(weights)!r})")


# ---------------------------------------------------------------------------------------------------------------
# Inspection, editing, projection and evaluation (issue 9): thin wrappers over groups / edit / project / metrics
# ---------------------------------------------------------------------------------------------------------------
def _ckpt_dir(ckpt: str) -> Path:
    path = Path(ckpt)
    return path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else path.parent


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file, or a run dir (latest checkpoint).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: <run dir>/groups).")
@click.option("--device", default="cpu", show_default=True)
def groups(ckpt: str, out: str | None, device: str) -> None:
    """Per grouped layer: channel → group assignment, group sizes, τ, affinity statistics (JSON + PNG heatmaps)."""
    from sarigan.groups import inspect_groups, summary_lines, write_report

    G = load_generator(ckpt, select_device(device))
    folder = Path(out) if out else _ckpt_dir(ckpt) / "groups"
    path, pngs = write_report(G, folder)
    for line in summary_lines(inspect_groups(G)):
        click.echo(line)
    click.echo(f"wrote {path} and {len(pngs)} heatmaps in {folder}")


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file, or a run dir (latest checkpoint).")
@click.option("--seed", type=int, default=0, show_default=True, help="Latent seed (the same z as `generate`).")
@click.option("--rows", type=int, default=1, show_default=True, help="Seeds seed … seed+rows−1, one row each.")
@click.option("--latent", type=click.Path(dir_okay=False), default=None,
              help="A latent.pt written by `sarigan project` instead of a seed.")
@click.option("--layer", type=int, required=True, help="Grouped layer index (see `sarigan groups`).")
@click.option("--group", type=int, default=None, help="Group to edit; omit to sweep all groups of the layer.")
@click.option("--scales", default="-2,-1,0,1,2", show_default=True, help="Comma-separated edit strengths δ.")
@click.option("--mode", type=click.Choice(["group", "channel", "gain"]), default="group", show_default=True,
              help="group: s_g[g] += δ (AdaGN); channel: spread s_c inside g by (1+δ) (Group AdaIN); gain: ×(1+δ).")
@click.option("--trunc", "psi", type=float, default=1.0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="edit.png", show_default=True)
@click.option("--device", default="cpu", show_default=True)
def edit(ckpt: str, seed: int, rows: int, latent: str | None, layer: int, group: int | None, scales: str, mode: str,
         psi: float, out: str, device: str) -> None:
    """PNG grid varying one group's style at one layer (columns = scales), or every group of the layer (rows)."""
    from contextlib import nullcontext

    from sarigan.edit import edit_grid, layer_resolution, parse_scales, sweep_layer
    from sarigan.project import fixed_noise

    dev = select_device(device)
    G = load_generator(ckpt, dev)
    values = parse_scales(scales)
    noise_ctx = nullcontext()
    if latent:
        saved = load_checkpoint(latent, map_location=dev)
        if "latent" not in saved:
            raise UserError(f"{latent} holds no 'latent'; write one with `sarigan project`")
        w = saved["latent"][None].to(dev)
        noise_ctx = fixed_noise(G, [n.to(dev) for n in saved["noises"]]) if "noises" in saved else noise_ctx
    else:
        w = G.mapping(z_from_seeds(list(range(seed, seed + rows)), G.cfg.z_dim).to(dev))
        w = G.truncate(w, psi) if psi != 1.0 else w
    with torch.no_grad(), noise_ctx:
        if group is None:
            images, groups_ = sweep_layer(G, w, layer, values, mode)
            what = f"rows = groups {groups_} of layer {layer}"
        else:
            images = edit_grid(G, w, layer, group, values, mode)
            what = f"layer {layer} group {group}, rows = {w.shape[0]} latent(s)"
    save_grid(images, out, nrow=len(values), upscale=max(1, 64 // G.cfg.resolution))
    click.echo(f"wrote {out}: {what} ({layer_resolution(G, layer)}²), columns = {mode} δ {values}")


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file, or a run dir (latest checkpoint).")
@click.option("--image", required=True, type=click.Path(dir_okay=False), help="PNG / JPEG to invert.")
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--space", type=click.Choice(["w", "w+"]), default="w+", show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--noise-reg", type=float, default=1e5, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="projection", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def project(ckpt: str, image: str, steps: int, space: str, lr: float, noise_reg: float, out: str, seed: int,
            device: str) -> None:
    """Invert an image into W / W+ (pixel MSE + noise regularization); edit it with `edit --latent`."""
    from neurips20_common import save_checkpoint

    from sarigan.project import ProjectConfig, load_image
    from sarigan.project import project as run_projection

    dev = select_device(device)
    G = load_generator(ckpt, dev)
    target = load_image(image, G.cfg.resolution)
    cfg = ProjectConfig(steps=steps, lr=lr, space=space, noise_reg=noise_reg)
    result = run_projection(G, target, cfg, seed=seed, log=click.echo)
    folder = Path(out)
    save_checkpoint(folder / "latent.pt", {"latent": result["latent"], "noises": result["noises"],
                                           "space": space, "ckpt": str(ckpt), "image": str(image),
                                           "mse": result["mse"], "steps": steps})
    up = max(1, 128 // G.cfg.resolution)
    save_grid(result["image"], folder / "projected.png", upscale=up)
    save_grid(torch.cat([target, result["image"]]), folder / "target_vs_projected.png", nrow=2, upscale=up)
    click.echo(f"pixel MSE {result['mse']:.5f}; wrote {folder}/latent.pt, projected.png, target_vs_projected.png")


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file, or a run dir (latest checkpoint).")
@click.option("--data", "data_spec", default=None, help="shapes | digits | PATH (default: the run's data).")
@click.option("--extractor", type=click.Choice(["proxy", "inception"]), default="proxy", show_default=True)
@click.option("--n", "n", type=int, default=2048, show_default=True, help="Samples (and real images).")
@click.option("--trunc", "psi", type=float, default=1.0, show_default=True)
@click.option("--kid/--no-kid", "with_kid", default=None, help="KID too (default: when n < 2048).")
@click.option("--range", "input_range", type=click.Choice(["tf", "pt"]), default="tf", show_default=True,
              help="Inception input range: tf = x/128−1 (clean-fid/StyleGAN3), pt = x/127.5−1 (pytorch-fid).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Reference-stats cache (default $SARIGAN_CACHE or ~/.cache/sarigan).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the record as JSON here.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def fid(ckpt: str, data_spec: str | None, extractor: str, n: int, psi: float, with_kid: bool | None,
        input_range: str, cache_dir: str | None, out: str | None, seed: int, device: str) -> None:
    """FID (and KID) of a checkpoint against its data, with the protocol recorded beside the scores."""
    import json

    from sarigan.metrics.features import make_extractor
    from sarigan.metrics.fid import evaluate_fid

    dev = select_device(device)
    G = load_generator(ckpt, dev)
    if data_spec is None:
        data_spec = G.meta.get("data")
        if not data_spec:
            raise UserError(f"{ckpt} does not record its data; pass --data")
    data = load_data(data_spec, G.cfg.resolution)
    cache = Path(cache_dir) if cache_dir else None
    ext = make_extractor(extractor, data.images, data.labels, data.name, dev, cache, input_range)
    record = evaluate_fid(G, data.images, data.name, ext, n=n, psi=psi, seed=seed, with_kid=with_kid,
                          cache_dir=cache, device=dev, log=click.echo)
    record["ckpt"] = str(ckpt)
    line = f"FID({extractor}) {record['fid']:.4f}"
    if "kid" in record:
        line += f"  KID {record['kid']:.5f} ± {record['kid_std']:.5f}"
    click.echo(f"{line}  (n={n}, ψ={psi}, {record['seconds']:.0f} s)")
    click.echo("protocol: " + json.dumps(record["protocol"]))
    if "note" in record:
        click.echo(record["note"])
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1))


@main.command()
@click.option("--data", "data_spec", default="shapes", show_default=True)
@click.option("--preset", default="demo", show_default=True, type=click.Choice(list(PRESETS)))
@click.option("--kimg", type=float, required=True, help="Training budget per row, thousand images.")
@click.option("--rows", default="stylegan2,uniform,learned_no_mi,sarigan", show_default=True)
@click.option("--n-eval", type=int, default=1000, show_default=True, help="Samples for FID/KID (proxy).")
@click.option("--n-seeds", type=int, default=64, show_default=True, help="Seeds per edit in disentanglement.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Default: runs/sarigan/ablate-<data>-<preset>-<kimg>kimg; finished rows are reused.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
              help="Override a config field of every row (the row's own grouping / MI settings win).")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", default="auto", show_default=True, help="CPU threads: auto or N.")
def ablate(data_spec: str, preset: str, kimg: float, rows: str, n_eval: int, n_seeds: int, run_dir: str | None,
           seed: int, set_pairs: tuple[str, ...], device: str, threads: str) -> None:
    """Train StyleGAN2 / uniform / learned-no-MI / SariGAN rows; CSV + markdown of FID/KID and disentanglement."""
    from sarigan.ablate import run_ablation

    dev = select_device(device)
    set_threads(threads, dev)
    base = get_preset(preset)
    changed = apply_set(base, parse_set(set_pairs))
    overrides = {f.name: getattr(changed, f.name) for f in dataclasses.fields(SariGANConfig)
                 if getattr(changed, f.name) != getattr(base, f.name)}
    name = f"ablate-{Path(data_spec).name}-{preset}-{kimg:g}kimg" + (f"-seed{seed}" if seed else "")
    path = Path(run_dir) if run_dir else Path("runs") / "sarigan" / name
    results = run_ablation(data_spec, preset, kimg, path, seed, dev, [r.strip() for r in rows.split(",")],
                           n_eval, n_seeds, overrides=overrides, log=click.echo)
    click.echo((path / "ablation.md").read_text())
    click.echo(f"{len(results)} rows; wrote {path / 'ablation.csv'} and {path / 'ablation.md'}")



# ---------------------------------------------------------------------------------------------------------------
# Inpainting (issue 20): thin wrappers over sarigan.inpaint
# ---------------------------------------------------------------------------------------------------------------
def _mask_config(kind: str | None, coverage: str | None, base: object | None = None) -> object:
    from sarigan.masks import MaskConfig

    cfg = base if isinstance(base, MaskConfig) else MaskConfig()
    lo, hi = cfg.coverage_min, cfg.coverage_max
    if coverage is not None:
        try:
            lo, hi = (float(v) for v in coverage.split(","))
        except ValueError:
            raise UserError(f"--coverage {coverage!r}: expected two fractions MIN,MAX such as 0.1,0.5") from None
    return MaskConfig(kind or cfg.kind, lo, hi)


@main.group(cls=Group)
def inpaint() -> None:
    """Conditional inpainting (co-modulated SariGAN / StyleGAN2) and the projection baseline."""


@inpaint.command("train")
@click.option("--data", "data_spec", default="shapes", show_default=True, help="shapes | digits | PATH")
@click.option("--preset", default="cpu16", show_default=True, type=click.Choice(list(PRESETS)))
@click.option("--kimg", type=float, default=None, help="Train until this many thousand images (default: preset).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Default: runs/sarigan/inpaint-<data>-<preset>-<grouping>-seed<seed>.")
@run_dir_options
@click.option("--device", default="auto", show_default=True)
@seed_option
@click.option("--grouping", type=click.Choice(GROUPINGS), default=None, help="none = the StyleGAN2 baseline.")
@click.option("--groups", type=int, default=None)
@click.option("--mi-weight", type=float, default=None)
@click.option("--rec-weight", type=float, default=None, help="L1 on the hole (default 0: adversarial only).")
@click.option("--mask-kind", type=click.Choice(["free-form", "box", "mixed"]), default=None)
@click.option("--coverage", default=None, help="Hole fraction range MIN,MAX (default 0.1,0.5).")
@click.option("--n-test", type=int, default=None, help="Held-out images kept out of training (default 1000).")
@click.option("--unconditional", is_flag=True, default=False,
              help="Train the plain SariGAN on the same training split (the G that the projection baseline inverts).")
@click.option("--batch", type=int, default=None)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other SariGAN config field.")
@click.option("--threads", default="auto", show_default=True)
def inpaint_train(data_spec: str, preset: str, kimg: float | None, run_dir: str | None, resume: bool, force: bool,
                  device: str, seed: int, grouping: str | None, groups: int | None, mi_weight: float | None,
                  rec_weight: float | None, mask_kind: str | None, coverage: str | None, n_test: int | None,
                  unconditional: bool, batch: int | None, sets: tuple[str, ...], threads: str) -> None:
    """Train a conditional inpainting model (adversarial on completions + the SariGAN losses)."""
    from sarigan.inpaint import InpaintConfig, train_inpainting

    given = dict(grouping=grouping, groups=groups, mi_weight=mi_weight, batch=batch, kimg=kimg)
    overrides = {**{k: v for k, v in given.items() if v is not None}, **parse_set(sets)}
    icfg = InpaintConfig(_mask_config(mask_kind, coverage), unconditional=unconditional,
                         **{k: v for k, v in dict(rec_weight=rec_weight, n_test=n_test).items() if v is not None})
    train_inpainting(data_spec, preset, run_dir, resume=resume, force=force, overrides=overrides, icfg=icfg,
                     seed=seed, device=device, threads=threads, log=click.echo)


@inpaint.command("complete")
@click.option("--ckpt", required=True, type=click.Path(),
              help="Conditional run (inpaint train) or an unconditional run (masked projection into W+).")
@click.option("--image", required=True, type=click.Path(dir_okay=False))
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False), default=None,
              help="Mask image of the same size: white (> 127) = hole to fill.")
@click.option("--box", default=None, help="Hole as x,y,w,h in pixels of --image (instead of --mask).")
@click.option("--out", default="completed.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Also write input | mask | completion.")
@click.option("--full-size", is_flag=True, default=False,
              help="Write --out at the image's own size: its pixels, with the hole filled by the completion resized "
                   "back (default: the model's R² centre crop).")
@click.option("--steps", type=int, default=200, show_default=True, help="Projection steps (unconditional --ckpt).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def inpaint_complete(ckpt: str, image: str, mask_path: str | None, box: str | None, out: str, grid: str | None,
                     full_size: bool, steps: int, seed: int, device: str) -> None:
    """Fill the hole of one image; writes the completion at the model's resolution (or, --full-size, the image's)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from sarigan.data import _prepare
    from sarigan.inpaint import Inpainter, completion_grid, paste_back, save_image, save_png
    from sarigan.masks import box_from_spec, box_full_size
    from sarigan.project import ProjectConfig, load_image

    if (mask_path is None) == (box is None):
        raise UserError("give exactly one of --mask PNG or --box x,y,w,h")
    inp = Inpainter.load(ckpt, select_device(device), project_cfg=ProjectConfig(steps=steps))
    res = inp.G.cfg.resolution
    x = load_image(image, res)
    with Image.open(image) as im:
        size = im.size
    if box is not None:
        m = box_from_spec(box, res, *size)
        hole = box_full_size(box, *size)
    else:
        if not Path(mask_path).is_file():
            raise UserError(f"mask {mask_path} does not exist")
        try:
            with Image.open(mask_path) as im:
                if im.size != size:
                    raise UserError(f"mask {mask_path} is {im.size[0]}×{im.size[1]} but the image is "
                                    f"{size[0]}×{size[1]}; give a mask of the image's size")
                arr = _prepare(im.convert("L"), res)
                hole = np.asarray(im.convert("L")) > 127  # the hole at the image's own size
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"{mask_path}: not a readable image ({exc})") from None
        m = torch.from_numpy((arr[:1] > 127).astype("float32"))[None]
        if not m.any():
            raise UserError(f"mask {mask_path} has no white (hole) pixel at the model's {res}² resolution")
    done = inp.complete(x, m, seed=seed)
    outside = 0
    if full_size:
        with Image.open(image) as im:
            full, outside = paste_back(np.asarray(im.convert("RGB")), done, hole)
        save_png(full, out)
    else:
        save_image(done, out)
    if grid:
        completion_grid(x, m, done, grid)
    click.echo(f"{inp.method}: filled {int(m.sum())} of {res * res} pixels; wrote {out}"
               + (f" ({size[0]}×{size[1]})" if full_size else "") + (f" and {grid}" if grid else ""))
    if outside:
        click.echo(f"warning: {outside} hole pixels lie outside the model's centre crop and were left as they are",
                   err=True)


@inpaint.command("eval")
@click.option("--ckpt", required=True, type=click.Path(), help="Conditional run, or unconditional (projection).")
@click.option("--data", "data_spec", default=None, help="shapes | digits | PATH (default: the run's data).")
@click.option("--n", "n", type=int, default=1000, show_default=True, help="Held-out images to complete.")
@click.option("--n-test", type=int, default=1000, show_default=True, help="Size of the held-out split.")
@click.option("--extractor", type=click.Choice(["proxy", "inception", "none"]), default="proxy", show_default=True)
@click.option("--mask-kind", type=click.Choice(["free-form", "box", "mixed"]), default=None)
@click.option("--coverage", default=None, help="Hole fraction range MIN,MAX (default 0.1,0.5).")
@click.option("--steps", type=int, default=200, show_default=True, help="Projection steps (unconditional --ckpt).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the scores as JSON here.")
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="8-row input|mask|completion|truth PNG.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", default="auto", show_default=True)
def inpaint_eval(ckpt: str, data_spec: str | None, n: int, n_test: int, extractor: str, mask_kind: str | None,
                 coverage: str | None, steps: int, out: str | None, grid: str | None, seed: int, device: str,
                 threads: str) -> None:
    """Score completions of held-out images under fixed masks: hole L1, PSNR, FID/KID vs the truths."""
    from sarigan.inpaint import InpaintConfig, Inpainter, evaluate, write_json
    from sarigan.metrics.features import make_extractor
    from sarigan.project import ProjectConfig

    dev = select_device(device)
    set_threads(threads, dev)
    inp = Inpainter.load(ckpt, dev, project_cfg=ProjectConfig(steps=steps))
    data_spec = data_spec or inp.data
    if not data_spec:
        raise UserError(f"{ckpt} does not record its data; pass --data")
    icfg = InpaintConfig(_mask_config(mask_kind, coverage), n_test=n_test)
    ext = None
    if extractor != "none":
        ref = load_data(data_spec, inp.G.cfg.resolution)
        ext = make_extractor(extractor, ref.images, ref.labels, ref.name, dev)
    record = evaluate(inp, data_spec, icfg, n, ext, seed=seed, grid=grid, log=click.echo)
    line = (f"{record['method']}: hole L1 {record['l1_hole']:.4f}  PSNR {record['psnr']:.2f} dB  "
            f"hole PSNR {record['psnr_hole']:.2f} dB")
    if "fid" in record:
        line += f"  FID({extractor}) {record['fid']:.3f}  KID {record['kid']:.5f} ± {record['kid_std']:.5f}"
    click.echo(f"{line}  (n={n}, coverage {record['coverage']:.3f}, {record['seconds']:.0f} s)")
    if out:
        write_json(record, out)

if __name__ == "__main__":
    main()
