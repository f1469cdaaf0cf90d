from click.testing import CliRunner

from sdgar import __version__
from sdgar.cli import main


def test_help_lists_verbs() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for verb in ["train", "evaluate", "recommend", "data", "compare", "benchmark"]:
        assert verb in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
