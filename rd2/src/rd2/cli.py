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

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def train() -> None:
    """Train an agent (rd2, rainbow, dqn, drdrl, hra). (not built yet: issue #8)"""
    _not_built("train", 8)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def evaluate() -> None:
    """Evaluate an agent checkpoint. (not built yet: issue #8)"""
    _not_built("evaluate", 8)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def saliency() -> None:
    """Per-channel saliency maps of a checkpoint. (not built yet: issue #8)"""
    _not_built("saliency", 8)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def plot() -> None:
    """Learning curves of several runs. (not built yet: issue #8)"""
    _not_built("plot", 8)


if __name__ == "__main__":
    main()
