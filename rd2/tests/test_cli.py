from click.testing import CliRunner

from rd2 import __version__
from rd2.cli import main


def test_help_lists_verbs() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for verb in ["decompose", "toy", "train", "evaluate", "saliency", "plot"]:
        assert verb in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
