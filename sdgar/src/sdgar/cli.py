"""Command line interface: a thin click layer over the library."""

from __future__ import annotations

import click

from sdgar import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdgar")
def main() -> None:
    """SD-GAR (NeurIPS 2020): sampling-decomposable GAN recommender, baselines, full-ranking evaluation."""


def _not_built(verb: str, issue: int) -> None:
    raise click.ClickException(f"'sdgar {verb}' is not built yet (tracked in issue #{issue}); nothing was run")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def train() -> None:
    """Train SD-GAR or a baseline on a dataset. (not built yet: issue #4)"""
    _not_built("train", 4)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def evaluate() -> None:
    """Full-ranking evaluation of a checkpoint. (not built yet: issue #4)"""
    _not_built("evaluate", 4)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def recommend() -> None:
    """Top-k recommendations with original ids. (not built yet: issue #4)"""
    _not_built("recommend", 4)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def data() -> None:
    """Dataset registry: info, download, convert. (not built yet: issue #4)"""
    _not_built("data", 4)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def compare() -> None:
    """Train several models and tabulate them (paper Table 2). (not built yet: issue #7)"""
    _not_built("compare", 7)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def benchmark() -> None:
    """Timing benchmarks (scaling with #items). (not built yet: issue #7)"""
    _not_built("benchmark", 7)


if __name__ == "__main__":
    main()
