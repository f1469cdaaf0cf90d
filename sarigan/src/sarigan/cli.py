"""Command line interface: a thin click layer over the library."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click
import torch
import torch.distributed as dist
from neurips20_common import CheckpointManager, RunDir, UserError, load_checkpoint, select_device

from sarigan import __version__
from sarigan.config import GROUPINGS, PRESETS, SariGANConfig, get_preset
from sarigan.data import load_data, save_grid
from sarigan.networks import Generator
from sarigan.train import Trainer, z_from_seeds


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sarigan")
def main() -> None:
    """SariGAN: semantic-aware normalization for GANs (NeurIPS 2020), StyleGAN2 in pure PyTorch."""


def _not_built(verb: str, issue: int) -> None:
    raise click.ClickException(f"'sarigan {verb}' is not built yet (tracked in issue #{issue}); nothing was run")


def _threads(spec: str, device: torch.device) -> None:
    """``auto``: on CPU, the cores not already busy (by the load average), at least 1; a shared CPU makes
    multi-threaded parallel regions stall (45× slower measured on 2 cores shared by ~10 jobs)."""
    if spec == "auto":
        if device.type != "cpu":
            return
        cores = os.cpu_count() or 1
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        torch.set_num_threads(max(1, min(cores, round(cores - busy))))
    else:
        try:
            torch.set_num_threads(max(1, int(spec)))
        except ValueError:
            raise click.ClickException(f"--threads must be 'auto' or an integer, got {spec!r}") from None


def _overrides(cfg: SariGANConfig, pairs: tuple[str, ...]) -> SariGANConfig:
    fields = {f.name: f for f in dataclasses.fields(SariGANConfig)}
    changes: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise click.ClickException(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = type(getattr(cfg, key))
        try:
            changes[key] = (value.lower() in ("1", "true", "yes", "on")) if kind is bool else kind(value)
        except ValueError:
            raise click.ClickException(f"--set {pair!r}: {value!r} is not a valid {kind.__name__}") from None
    return cfg.replace(**changes)


RESUME_SETTABLE = ("kimg", "max_minutes", "fd_every", "fd_samples", "sample_every", "ckpt_every", "log_every")


def _init_distributed(device_spec: str) -> tuple[int, int, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_spec)
    if world == 1:
        return 0, 1, device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


@main.command()
@click.option("--data", "data_spec", default="shapes", show_default=True,
              help="shapes | digits | PATH to a folder or zip of PNG/JPEG images")
@click.option("--preset", default="cpu16", show_default=True, type=click.Choice(list(PRESETS)))
@click.option("--kimg", type=float, default=None, help="Train until this many thousand images (default: preset).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Default: runs/sarigan/<data>-<preset>.")
@click.option("--resume", "resume", type=click.Path(file_okay=False), default=None,
              help="Continue a run dir exactly (weights, optimizers, EMA, w̄, counters, RNG).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--grouping", type=click.Choice(GROUPINGS), default=None, help="learned | uniform | none (StyleGAN2)")
@click.option("--groups", type=int, default=None, help="Groups per grouped layer (G).")
@click.option("--mi-weight", type=float, default=None, help="MI loss weight on D and G (official 20).")
@click.option("--mi-on-mixed/--no-mi-on-mixed", default=None, help="MI on style-mixed batches too (official: no).")
@click.option("--swap-prob", type=float, default=None,
              help="P(group/channel swap | mixing); official 0 (dead branch), 0.5 the likely intent.")
@click.option("--batch", type=int, default=None, help="Total batch over all processes.")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast on CUDA.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other config field.")
@click.option("--threads", default="auto", show_default=True, help="CPU threads: auto or N.")
def train(data_spec: str, preset: str, kimg: float | None, run_dir: str | None, resume: str | None, device: str,
          seed: int, grouping: str | None, groups: int | None, mi_weight: float | None, mi_on_mixed: bool | None,
          swap_prob: float | None, batch: int | None, amp: bool | None, sets: tuple[str, ...], threads: str) -> None:
    """Train SariGAN / StyleGAN2 on shapes, digits or an image folder / zip."""
    try:
        rank, world, dev = _init_distributed(device)
        _threads(threads, dev)
        state = None
        if resume:
            run = RunDir.open(resume)
            saved = run.read_config()
            cfg = SariGANConfig.from_dict(saved["config"])
            if kimg is not None:
                cfg = cfg.replace(kimg=kimg)
            bad = [p for p in sets if p.partition("=")[0] not in RESUME_SETTABLE]
            if bad:
                raise click.ClickException(f"--set {bad[0]!r}: on --resume only {', '.join(RESUME_SETTABLE)} "
                                           "may change")
            cfg = _overrides(cfg, sets)
            data_spec, seed, preset = saved["data"], saved["seed"], saved.get("preset", preset)
            latest = CheckpointManager(run.checkpoints).latest()
            if latest is None:
                raise click.ClickException(f"{run.checkpoints} holds no checkpoint to resume from")
            state = load_checkpoint(latest, map_location=dev)
        else:
            cfg = get_preset(preset)
            given = dict(grouping=grouping, groups=groups, mi_weight=mi_weight, mi_on_mixed=mi_on_mixed,
                         swap_prob=swap_prob, batch=batch, amp=amp, kimg=kimg)
            cfg = _overrides(cfg.replace(**{k: v for k, v in given.items() if v is not None}), sets)
            path = Path(run_dir) if run_dir else Path("runs") / "sarigan" / f"{Path(data_spec).name}-{preset}"
            if CheckpointManager(path / "checkpoints").latest() is not None:
                raise click.ClickException(f"{path} already holds a run; continue it with --resume {path}, "
                                           "or pass another --run-dir")
            run = RunDir(path)
        data = load_data(data_spec, cfg.resolution, seed=seed)
        if rank == 0:
            run.path.mkdir(parents=True, exist_ok=True)
            run.write_config({"config": cfg, "data": data_spec, "seed": seed, "preset": preset,
                              "world": world, "device": str(dev)})
            click.echo(f"sarigan: {cfg.grouping} grouping, {cfg.resolution}², G={cfg.groups}, batch {cfg.batch} on "
                       f"{world}× {dev} ({torch.get_num_threads()} threads), {len(data)} images from {data.name} "
                       f"→ {run.path}")
        trainer = Trainer(cfg, data, dev, seed)
        if state is not None:
            trainer.load_state_dict(state)
            if rank == 0:
                click.echo(f"resumed from {latest} at iteration {trainer.step} ({trainer.nimg / 1000:.1f} kimg)")
        trainer.fit(cfg.kimg, run, extra={"data": data_spec},
                    log=(lambda m: click.echo(m)) if rank == 0 else (lambda m: None))
        if rank == 0:
            click.echo(f"done: {trainer.step} iterations; samples in {run.file('samples')}")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if world > 1:
        # A clean multi-process run skips interpreter teardown: with gloo a rank sometimes aborts in C++
        # destructors after finishing ("terminate called without an active exception"), failing torchrun.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _parse_seeds(spec: str) -> list[int]:
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            lo, sep, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise click.ClickException(f"--seeds {spec!r}: use a list and/or ranges like 0-63 or 1,5,9-12") from None
    if not seeds:
        raise click.ClickException("--seeds is empty")
    return seeds


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint file, or a run dir (latest checkpoint).")
@click.option("--seeds", default="0-63", show_default=True)
@click.option("--trunc", "psi", type=float, default=1.0, show_default=True, help="Truncation ψ towards w̄.")
@click.option("--trunc-cutoff", type=int, default=None, help="Truncate only the first N per-layer latents.")
@click.option("--noise", type=click.Choice(["const", "random"]), default="const", show_default=True)
@click.option("--out", default="grid.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True)
@click.option("--raw", is_flag=True, help="Use the training G instead of the EMA generator.")
def generate(ckpt: str, seeds: str, psi: float, trunc_cutoff: int | None, noise: str, out: str, device: str,
             raw: bool) -> None:
    """Sample a PNG grid from a checkpoint (fixed seeds, optional truncation)."""
    try:
        dev = select_device(device)
        path = Path(ckpt)
        if path.is_dir():
            latest = CheckpointManager(path / "checkpoints").latest() or CheckpointManager(path).latest()
            if latest is None:
                raise click.ClickException(f"{path} holds no checkpoint")
            path = latest
        state = load_checkpoint(path, map_location=dev)
        cfg = SariGANConfig.from_dict(state["config"])
        G = Generator(cfg).to(dev).eval()
        G.load_state_dict(state["G" if raw else "G_ema"])
        seed_list = _parse_seeds(seeds)
        z = z_from_seeds(seed_list, cfg.z_dim).to(dev)
        with torch.no_grad():
            images = torch.cat([G(z[i: i + 64], psi=psi, cutoff=trunc_cutoff, noise_mode=noise)
                                for i in range(0, len(z), 64)])
        save_grid(images, out, upscale=max(1, 128 // cfg.resolution))
        click.echo(f"wrote {len(seed_list)} samples (ψ={psi}) from {path} to {out}")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


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
    from sarigan.edit import load_generator
    from sarigan.groups import inspect_groups, summary_lines, write_report

    try:
        G = load_generator(ckpt, select_device(device))
        folder = Path(out) if out else _ckpt_dir(ckpt) / "groups"
        path, pngs = write_report(G, folder)
        for line in summary_lines(inspect_groups(G)):
            click.echo(line)
        click.echo(f"wrote {path} and {len(pngs)} heatmaps in {folder}")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


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

    from sarigan.edit import edit_grid, layer_resolution, load_generator, parse_scales, sweep_layer
    from sarigan.project import fixed_noise

    try:
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
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


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

    from sarigan.edit import load_generator
    from sarigan.project import ProjectConfig, load_image
    from sarigan.project import project as run_projection

    try:
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
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


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

    from sarigan.edit import load_generator
    from sarigan.metrics.features import make_extractor
    from sarigan.metrics.fid import evaluate_fid

    try:
        dev = select_device(device)
        G = load_generator(ckpt, dev)
        if data_spec is None:
            data_spec = load_checkpoint(_latest(ckpt)).get("data")
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
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


def _latest(ckpt: str) -> Path:
    path = Path(ckpt)
    if path.is_dir():
        latest = CheckpointManager(path / "checkpoints").latest() or CheckpointManager(path).latest()
        if latest is None:
            raise UserError(f"{path} holds no checkpoint")
        return Path(latest)
    return path


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

    try:
        dev = select_device(device)
        _threads(threads, dev)
        base = get_preset(preset)
        changed = _overrides(base, set_pairs)
        overrides = {f.name: getattr(changed, f.name) for f in dataclasses.fields(SariGANConfig)
                     if getattr(changed, f.name) != getattr(base, f.name)}
        name = f"ablate-{Path(data_spec).name}-{preset}-{kimg:g}kimg" + (f"-seed{seed}" if seed else "")
        path = Path(run_dir) if run_dir else Path("runs") / "sarigan" / name
        results = run_ablation(data_spec, preset, kimg, path, seed, dev, [r.strip() for r in rows.split(",")],
                               n_eval, n_seeds, overrides=overrides, log=click.echo)
        click.echo((path / "ablation.md").read_text())
        click.echo(f"{len(results)} rows; wrote {path / 'ablation.csv'} and {path / 'ablation.md'}")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
