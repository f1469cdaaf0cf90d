"""Command line interface: a thin click layer over the library."""

from __future__ import annotations

import click

from sarigan import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sarigan")
def main() -> None:
    """SariGAN: semantic-aware normalization for GANs (NeurIPS 2020), StyleGAN2 in pure PyTorch."""


def _not_built(verb: str, issue: int) -> None:
    raise click.ClickException(f"'sarigan {verb}' is not built yet (tracked in issue #{issue}); nothing was run")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def train() -> None:
    """Train SariGAN / StyleGAN2 on shapes, digits or an image folder. (not built yet: issue #6)"""
    _not_built("train", 6)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def generate() -> None:
    """Sample images from a checkpoint. (not built yet: issue #6)"""
    _not_built("generate", 6)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def edit() -> None:
    """Edit one semantic group of a layer. (not built yet: issue #9)"""
    _not_built("edit", 9)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def groups() -> None:
    """Inspect the learned channel groups. (not built yet: issue #9)"""
    _not_built("groups", 9)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def project() -> None:
    """Invert a real image into W / W+. (not built yet: issue #9)"""
    _not_built("project", 9)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def fid() -> None:
    """FID / KID of a checkpoint. (not built yet: issue #9)"""
    _not_built("fid", 9)

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def ablate() -> None:
    """Train and tabulate the ablation rows. (not built yet: issue #9)"""
    _not_built("ablate", 9)


if __name__ == "__main__":
    main()
