"""Command line interface: a thin click layer over the library."""

from __future__ import annotations

import click
from neurips20_common.cli import Group, tensorboard_available, tensorboard_option

from rd2 import __version__


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rd2")
def main() -> None:
    """RD2: reward decomposition with representation disentanglement (NeurIPS 2020) on a toy game and Atari."""


def _not_built(verb: str, issue: int) -> None:
    raise click.ClickException(f"'rd2 {verb}' is not built yet (tracked in issue #{issue}); nothing was run")


@main.command()
@click.option("--env", "env_id", default="Pong", show_default=True,
              help="Atari game (Pong, ALE/Pong-v5, PongNoFrameskip-v4), a gymnasium id (CartPole-v1, "
              "rd2/MonsterTreasure-v0; toy = the latter) or module:function returning a gymnasium.Env.")
@click.option("--preset", default="default", show_default=True, type=click.Choice(["default", "demo"]))
@click.option("--steps", type=int, help="Transitions to collect [default preset: 100000].")
@click.option("--iters", type=int, help="Decomposition updates [default preset: 2500].")
@click.option("--K", "K", type=int, help="Number of channels [2].")
@click.option("--mask", "mask_type", type=click.Choice(["state", "const", "none"]), help="Mask type [state].")
@click.option("--mask-gate", type=click.Choice(["product", "shuffle"]), help="x ⊙ m, or noisy gating [product].")
@click.option("--lambda-mini", type=float, help="Weight of L_mini [1e-3].")
@click.option("--lambda-div1", type=float, help="Weight of L_div1 [1e-2].")
@click.option("--lambda-div2", type=float, help="Weight of L_div2 (decorrelation) [0].")
@click.option("--lambda-zero", type=float, help="Weight of the zero-reward term [1.0].")
@click.option("--lambda-value", type=float, help="Weight of L_value, one reward value per channel (not in RD²; "
              "separates same-sign sources) [0.1].")
@click.option("--head-signs", help="Sign prior per channel, e.g. '+,-' (MuDE); 'auto' from the signs of the collected "
              "rewards; '' for none [auto].")
@click.option("--sign-fn", type=click.Choice(["penalty", "softplus", "relu"]),
              help="Soft sign penalty, or a hard constraint (relu = MuDE) [penalty].")
@click.option("--reward-target", type=click.Choice(["clipped", "raw", "scaled"]),
              help="Regression target: sign(r), r, or r / max|r| [scaled].")
@click.option("--reward-input", type=click.Choice(["next", "current_action"]),
              help="Predict r_t from s_{t+1}, or from s_t and a_t [next].")
@click.option("--reward-sources", help="Label raw reward values for purity, e.g. '10=pellet,200=ghost,400=ghost' "
              "[the table of rd2.purity for known games, else one source per value].")
@click.option("--balance", type=click.Choice(["clipped", "raw"]), help="Reward-balanced sampling over [raw] values.")
@click.option("--policy", type=click.Choice(["random", "agent"]), help="Collection policy [random].")
@click.option("--agent-ckpt", type=click.Path(dir_okay=False), help="Agent checkpoint for --policy agent.")
@click.option("--epsilon", type=float, help="ε-greedy exploration on top of the agent [0.05].")
@click.option("--num-envs", type=int, help="Parallel envs for collection [8].")
@click.option("--backend", type=click.Choice(["auto", "ale", "gymnasium"]), help="Atari vector env backend [auto].")
@click.option("--torso", type=click.Choice(["auto", "none"]), help="auto: Nature CNN for images, MLP for vectors; "
              "none: masks on the raw vector features [auto].")
@click.option("--init", type=click.Choice(["he", "torch"]), help="Weight init of torso and heads [he].")
@click.option("--warmup", type=int, help="Updates of linear learning-rate warm-up [100].")
@click.option("--batch-size", type=int, help="[32]")
@click.option("--lr", type=float, help="Adam learning rate [2.5e-4].")
@click.option("--mask-lr-scale", type=float, help="Mask-network learning rate / --lr [1].")
@click.option("--torso-lr-scale", type=float, help="Torso learning rate / --lr [0.25].")
@click.option("--eval-every", type=int, help="Updates between purity evaluations [250].")
@click.option("--eval-samples", type=int, help="Nonzero-reward transitions of the running purity [2000].")
@click.option("--ckpt-every", type=int, help="Updates between checkpoints [500].")
@click.option("--threads", type=int, help="torch threads [2].")
@click.option("--seed", type=int, default=None, help="[0]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Output folder [runs/decompose-<env>].")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), is_flag=False, flag_value="",
              help="Continue the run in --run-dir (or in the folder given here) exactly (--iters may extend it).")
@click.option("--force", is_flag=True, help="Start over in a --run-dir that holds a run: the old one is moved aside "
              "to <dir>.old-<time>, never deleted.")
@click.option("--keep-replay", is_flag=True, default=None, help="Keep the collected transitions as replay.npz in the "
              "run dir (large: 375 MB for the demo). Without it --resume collects the same transitions again.")
@click.option("--strict", is_flag=True, help="Exit with code 4 when the decomposition collapsed (sub-rewards that "
              "do not depend on the input).")
@click.option("--tensorboard/--no-tensorboard", default=tensorboard_available(),
              help="Also log the metrics.csv scalars to <run-dir>/tb (default: on when tensorboard is installed).")
@click.option("--progress/--no-progress", "show", default=None, help="Progress bars [on a terminal].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other field of DecomposeConfig "
              "(repeatable, dotted for the decomposition), e.g. --set decomposition.hidden=64.")
def decompose(env_id: str, preset: str, run_dir: str | None, resume_dir: str | None, force: bool, device: str,
              strict: bool, tensorboard: bool, show: bool | None, sets: tuple[str, ...], **opts: object) -> None:
    """Learn an RD2 reward decomposition from collected transitions and report balanced channel purity.

    Example: rd2 decompose --env Pong --preset demo --run-dir runs/demo/rd2
    """
    from neurips20_common import UserError, select_device
    from neurips20_common.cli import apply_set, parse_set, prepare_run_dir
    from neurips20_common.errors import as_user_error

    from rd2.config import config_from_dict, make_config
    from rd2.decompose import check_strict, run_decompose, validate

    try:
        dev = select_device(device)
        if resume_dir == "":  # `--run-dir DIR --resume`, the convention of all three CLIs
            if not run_dir:
                raise UserError("--resume without a folder continues the run in --run-dir: pass --run-dir DIR")
            resume_dir = run_dir
        if resume_dir:
            run = prepare_run_dir(resume_dir, resume=True)
            cfg = config_from_dict(run.read_config())
            if opts.get("iters") is not None:
                cfg.iters = int(opts["iters"])  # type: ignore[arg-type]
            validate(cfg)
        else:
            cfg = apply_set(make_config(preset, env=env_id, **opts), parse_set(sets))
            validate(cfg)
            name = env_id.replace("ALE/", "").replace("/", "-").replace(":", "-").split("-v")[0]
            run = prepare_run_dir(run_dir or f"runs/decompose-{name.replace('NoFrameskip', '')}", force=force)
        summary = run_decompose(cfg, run, dev, resume=bool(resume_dir), show_progress=show, log=click.echo,
                                tensorboard=tensorboard)
        if strict:
            check_strict(summary)
    except (UserError, OSError) as exc:
        user = exc if isinstance(exc, UserError) else as_user_error(exc)
        if user is None:
            raise
        err = click.ClickException(str(user))
        err.exit_code = getattr(user, "exit_code", 2)  # 2 user error, 3 NaN/Inf, 4 collapsed under --strict
        raise err from None


@main.command()
@click.option("--seeds", type=int, default=5, show_default=True, help="Seeds 0..N-1.")
@click.option("--size", type=int, default=8, show_default=True, help="Grid side.")
@click.option("--distractors", type=int, default=0, show_default=True, help="Extra noise/clock features.")
@click.option("--magnitudes", default="1,-1", show_default=True, help="r_gold,r_monster.")
@click.option("--chase-prob", type=float, default=0.0, show_default=True, help="Monster steps toward the agent.")
@click.option("--iters", type=int, default=None, help="Updates per model [3000].")
@click.option("--variants", default="rd2,rd2_no_mini,rd2_no_div1,unmasked_k_heads", show_default=True)
@click.option("--mask-gate", type=click.Choice(["product", "shuffle"]), default=None, help="[toy preset]")
@click.option("--jobs", type=int, default=1, show_default=True, help="Seeds run in parallel processes.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="runs/toy/table1.csv",
              show_default=True, help="CSV of the per-variant summary (per-seed rows go beside it).")
def toy(seeds: int, size: int, distractors: int, magnitudes: str, chase_prob: float, iters: int | None,
        variants: str, mask_gate: str | None, jobs: int, out_path: str) -> None:
    """Monster-Treasure toy game: a Table-1-style comparison of RD2 and ablations over seeds.

    Example: rd2 toy --seeds 5
    """
    import dataclasses
    from pathlib import Path

    import pandas as pd

    from rd2.toy_experiment import VARIANTS, ToyConfig, run_toy, summarize

    try:
        mags = tuple(float(v) for v in magnitudes.split(","))
    except ValueError:
        raise click.BadParameter(f"expected two numbers like 1,-2, got {magnitudes!r}",
                                 param_hint="--magnitudes") from None
    if len(mags) != 2:
        raise click.BadParameter("expected two numbers", param_hint="--magnitudes")
    names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown {unknown}; choose from {', '.join(VARIANTS)}", param_hint="--variants")
    cfg = ToyConfig(size=size, distractors=distractors, magnitudes=mags, chase_prob=chase_prob)  # type: ignore
    if iters:
        cfg.iters = iters
    if mask_gate:
        cfg.decomposition = dataclasses.replace(cfg.decomposition, mask_gate=mask_gate)
    rows = run_toy(cfg, list(range(seeds)), names, log=click.echo, jobs=jobs)
    table = pd.DataFrame(summarize(rows))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    pd.DataFrame(rows).to_csv(out.with_name(out.stem + "_per_seed.csv"), index=False)
    cols = ["variant", "balanced_accuracy_mean", "channel_accuracy_mean", "channel_accuracy_std", "sub_reward_mse_mean",
            "masks_recovered",
            "mask_f1_mean", "sum_mse_mean"]
    if distractors:
        cols.append("distractor_mask_weight_mean")
    click.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"wrote {out} and {out.with_name(out.stem + '_per_seed.csv')}")


def _parse_sets(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.ClickException(f"--set {item!r}: expected KEY=VALUE, e.g. --set decomposition.K=3")
        out[key.strip()] = value.strip()
    return out


def _user_errors(fn):
    """Turn library errors the user can fix into one message and a non-zero exit."""
    import functools

    from neurips20_common import UserError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, FileNotFoundError) as exc:
            err = click.ClickException(str(exc))
            err.exit_code = getattr(exc, "exit_code", 2)  # 2 user error, 3 training diverged (NaN/Inf)
            raise err from None

    return wrapper


@main.command()
@click.option("--env", default="Pong", show_default=True, help="Pong, ALE/Pong-v5, PongNoFrameskip-v4 or toy.")
@click.option("--algo", type=click.Choice(["rd2", "rainbow", "dqn", "drdrl", "hra"]), default="rd2", show_default=True)
@click.option("--frames", type=int, default=None, help="Emulator frames (agent steps x 4 on Atari). [10M; toy: 50k]")
@click.option("--preset", default=None, help="Hyperparameter preset: atari (standard), cpu, toy. [toy for --env toy, "
              "else atari]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a hyperparameter (repeatable), "
              "e.g. --set lr=1e-4 --set decomposition.lambda_div1=0.05.")
@click.option("--K", "num_components", type=int, default=2, show_default=True, help="Channels (rd2, drdrl).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--num-envs", type=int, default=1, show_default=True, help="Envs stepped together (exact resume: 1).")
@click.option("--backend", type=click.Choice(["auto", "ale", "python"]), default="auto", show_default=True,
              help="Atari envs: ale-py's native vector env, or the gymnasium wrappers.")
@click.option("--init-decomposition", type=click.Path(), default="",
              help="rd2: start the decomposition from a `rd2 decompose` run dir or checkpoint.")
@click.option("--eval-every", type=int, default=None, help="Frames between evaluations [frames/10; 0 = never].")
@click.option("--eval-episodes", type=int, default=5, show_default=True)
@click.option("--ckpt-every", type=int, default=None, help="Frames between checkpoints [frames/10].")
@click.option("--save-buffer/--no-save-buffer", default=False, show_default=True,
              help="Also checkpoint the replay (exact resume of the learning, large on Atari).")
@click.option("--sticky", type=float, default=0.0, show_default=True, help="Sticky-action prob. (v5 uses 0.25).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="[runs/<algo>-<env>-s<seed>]")
@click.option("--resume", type=click.Path(file_okay=False), default=None, is_flag=False, flag_value="",
              help="Continue the run in --run-dir (or in the folder given here) from its newest checkpoint.")
@click.option("--force", is_flag=True, help="Start over in a --run-dir that holds a run (moved aside, not deleted).")
@click.option("--replay-device", type=click.Choice(["cpu", "device"]), default="cpu", show_default=True,
              help="Keep the replay frames on the training device (GPU-resident replay on CUDA).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads (0 = torch default).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@tensorboard_option
@_user_errors
def train(env, algo, frames, preset, sets, num_components, seed, num_envs, backend, init_decomposition, eval_every,
          eval_episodes, ckpt_every, save_buffer, sticky, run_dir, resume, force, replay_device, device, threads,
          progress, tensorboard) -> None:
    """Train an agent (rd2, rainbow, dqn, drdrl, hra); writes progress.csv, eval.csv and checkpoints."""
    import dataclasses

    from rd2 import train as tr
    from rd2.config import replace_key, validate_agent, validate_train

    overrides = _parse_sets(sets)
    if resume == "":  # `--run-dir DIR --resume`, the convention of all three CLIs
        if not run_dir:
            raise click.UsageError("--resume without a folder continues the run in --run-dir: pass --run-dir DIR")
        resume = run_dir
    if resume:
        cfg, acfg = tr.configs_from_run(resume)
        cfg = dataclasses.replace(cfg, frames=cfg.frames if frames is None else frames, device=device,
                                  threads=threads, progress=progress, tensorboard=tensorboard)
        for key, value in overrides.items():
            acfg = replace_key(acfg, key, value)
    else:
        toy_env = tr.is_toy(env)
        preset = preset or ("toy" if toy_env else "atari")
        if frames is None:
            frames = 50_000 if toy_env else 10_000_000
        cfg = tr.TrainConfig(env=env, algo=algo, preset=preset, frames=frames, seed=seed, num_envs=num_envs,
                             backend=backend, init_decomposition=init_decomposition,
                             eval_every=max(frames // 10, 1) if eval_every is None else eval_every,
                             eval_episodes=eval_episodes,
                             ckpt_every=max(frames // 10, 1) if ckpt_every is None else ckpt_every,
                             save_buffer=save_buffer, sticky=sticky, num_components=num_components, device=device,
                             replay_device=replay_device, threads=threads, progress=progress,
                             tensorboard=tensorboard)
        acfg = tr.agent_config(algo, preset, overrides)
    validate_train(cfg)  # before anything is written: --frames 0, --num-envs 0, ... are user errors
    validate_agent(acfg)
    import signal

    signal.signal(signal.SIGTERM, tr.request_stop)  # stops like Ctrl-C; held during start-up (a checkpoint is saved)
    summary = tr.train(cfg, acfg, run_dir=run_dir, resume=resume, force=force)
    if summary.get("interrupted"):
        click.echo(f"interrupted at frame {summary['frames']}: checkpoint {summary['checkpoint']} saved")
    click.echo(f"{cfg.algo} on {cfg.env}: {summary['frames']} frames, {summary['updates']} updates, "
               f"{summary['sps']:.0f} steps/s; last episode return {summary['last_return']:.1f}")
    open_eps = ", ".join(f"env {u['env']}: {u['length']} steps, return {u['return_raw']:.0f}"
                         for u in summary.get("unfinished", []))
    if open_eps:
        click.echo(f"episodes still running (not in progress.csv): {open_eps}")
    if summary.get("exact_resume") is False:
        click.echo("note: resumed from a mid-episode checkpoint: new episodes were started (not bit-exact)")
    click.echo(f"run dir: {summary['run_dir']}  (progress.csv, eval.csv, checkpoints/)")


@main.command()
@click.option("--ckpt", required=True, type=click.Path(), help="A checkpoint of `rd2 train`, or its run dir (newest).")
@click.option("--episodes", type=int, default=10, show_default=True)
@click.option("--eps", "epsilon", type=float, default=None, help="Exploration during evaluation [agent's eps_eval].")
@click.option("--sticky", type=float, default=None, help="Sticky-action probability [as trained].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="[<run>/eval-<step>]")
@click.option("--device", default="auto", show_default=True)
@_user_errors
def evaluate(ckpt, episodes, epsilon, sticky, seed, out_dir, device) -> None:
    """Evaluate an agent checkpoint: total and per-component returns (CSV + plot)."""
    from rd2.evaluate import evaluate_checkpoint

    s = evaluate_checkpoint(ckpt, episodes, out_dir, epsilon, seed, sticky, device)
    click.echo(f"{s['algo']} on {s['env']} (step {s['step']}), {episodes} episodes:")
    for key in s:
        if key.endswith("_mean") and key != "length_mean":
            name = key[:-5]
            click.echo(f"  {name:28s} {s[key]:10.2f} ± {s[name + '_std']:.2f}")
    click.echo(f"wrote {s['out_dir']}/episodes.csv, summary.csv, returns.png")


@main.command()
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="A checkpoint of `rd2 train`.")
@click.option("--steps", type=int, default=200, show_default=True)
@click.option("--png-every", type=int, default=20, show_default=True)
@click.option("--eps", "epsilon", type=float, default=None, help="Exploration of the rollout [agent's eps_eval].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="[<run>/saliency-<step>]")
@click.option("--device", default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
@_user_errors
def saliency(ckpt, steps, png_every, epsilon, seed, out_dir, device, progress) -> None:
    """Per-channel Jacobian saliency of r̂_k and Q_k and the mask maps (PNGs + GIF)."""
    from rd2.saliency import run_saliency

    s = run_saliency(ckpt, steps, out_dir, png_every, epsilon, seed, device, progress)
    click.echo(f"{s['steps']} steps over {s['episodes_started']} episode(s) -> {s['out_dir']}")
    for key in ("gif", "png", "csv"):
        if key in s:
            click.echo(f"  {key}: {s[key]}")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--out", default="runs/curves.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--metric", default="return_raw", show_default=True, help="A progress.csv column.")
@click.option("--smooth", type=int, default=10, show_default=True, help="Moving average over episodes.")
@_user_errors
def plot(runs, out, metric, smooth) -> None:
    """Learning curves of several runs (run dirs or progress.csv files) on one figure."""
    from rd2.plot_runs import final_returns, plot_runs

    path = plot_runs(list(runs), out, metric, smooth)
    for run, value in final_returns(list(runs), metric=metric):
        click.echo(f"  {run}: mean {metric} of the last 10 episodes = {value:.2f}")
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
