"""Command line interface: a thin click layer over the library."""

from __future__ import annotations

import click

from rd2 import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rd2")
def main() -> None:
    """RD2: reward decomposition with representation disentanglement (NeurIPS 2020) on a toy game and Atari."""


def _not_built(verb: str, issue: int) -> None:
    raise click.ClickException(f"'rd2 {verb}' is not built yet (tracked in issue #{issue}); nothing was run")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def decompose() -> None:
    """Learn a reward decomposition on Atari (e.g. --env Pong). (not built yet: issue #5)"""
    _not_built("decompose", 5)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def toy() -> None:
    """Monster-Treasure toy game table (Table 1 style). (not built yet: issue #5)"""
    _not_built("toy", 5)

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
            raise click.ClickException(str(exc)) from None

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
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--num-envs", type=int, default=1, show_default=True, help="Envs stepped together (exact resume: 1).")
@click.option("--eval-every", type=int, default=None, help="Frames between evaluations [frames/10; 0 = never].")
@click.option("--eval-episodes", type=int, default=5, show_default=True)
@click.option("--ckpt-every", type=int, default=None, help="Frames between checkpoints [frames/10].")
@click.option("--save-buffer/--no-save-buffer", default=False, show_default=True,
              help="Also checkpoint the replay (exact resume of the learning, large on Atari).")
@click.option("--sticky", type=float, default=0.0, show_default=True, help="Sticky-action prob. (v5 uses 0.25).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="[runs/<algo>-<env>-s<seed>]")
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this directory from its newest checkpoint.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads (0 = torch default).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_user_errors
def train(env, algo, frames, preset, sets, num_components, seed, num_envs, eval_every, eval_episodes, ckpt_every,
          save_buffer, sticky, run_dir, resume, device, threads, progress) -> None:
    """Train an agent (rd2, rainbow, dqn, drdrl, hra); writes progress.csv, eval.csv and checkpoints."""
    import dataclasses

    from rd2 import train as tr

    overrides = _parse_sets(sets)
    if resume:
        cfg, acfg = tr.configs_from_run(resume)
        cfg = dataclasses.replace(cfg, frames=frames or cfg.frames, device=device, threads=threads,
                                  progress=progress)
        for key, value in overrides.items():
            acfg = tr._replace(acfg, key, value)
    else:
        toy_env = tr.is_toy(env)
        preset = preset or ("toy" if toy_env else "atari")
        frames = frames or (50_000 if toy_env else 10_000_000)
        cfg = tr.TrainConfig(env=env, algo=algo, preset=preset, frames=frames, seed=seed, num_envs=num_envs,
                             eval_every=frames // 10 if eval_every is None else eval_every,
                             eval_episodes=eval_episodes, ckpt_every=frames // 10 if ckpt_every is None else ckpt_every,
                             save_buffer=save_buffer, sticky=sticky, num_components=num_components, device=device,
                             threads=threads, progress=progress)
        acfg = tr.agent_config(algo, preset, overrides)
    summary = tr.train(cfg, acfg, run_dir=run_dir, resume=resume)
    click.echo(f"{cfg.algo} on {cfg.env}: {summary['frames']} frames, {summary['updates']} updates, "
               f"{summary['sps']:.0f} steps/s; last episode return {summary['last_return']:.1f}")
    if summary.get("exact_resume") is False:
        click.echo("note: resumed from a mid-episode checkpoint: new episodes were started (not bit-exact)")
    click.echo(f"run dir: {summary['run_dir']}  (progress.csv, eval.csv, checkpoints/)")


@main.command()
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="A checkpoint of `rd2 train`.")
@click.option("--episodes", type=int, default=10, show_default=True)
@click.option("--eps", "epsilon", type=float, default=None, help="Exploration during evaluation [agent's eps_eval].")
@click.option("--sticky", type=float, default=None, help="Sticky-action probability [as trained].")
@click.option("--seed", type=int, default=12345, show_default=True)
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
