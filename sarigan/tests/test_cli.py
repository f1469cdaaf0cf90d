from click.testing import CliRunner

from sarigan import __version__
from sarigan.cli import main


def test_help_lists_verbs() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for verb in ["train", "generate", "edit", "groups", "project", "fid", "ablate"]:
        assert verb in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def _train(tmp_path, *extra: str):
    from pathlib import Path

    run = Path(tmp_path) / "run"
    args = ["train", "--data", "shapes", "--preset", "tiny", "--run-dir", str(run), "--device", "cpu",
            "--threads", "1", *extra]
    return run, CliRunner().invoke(main, args)


def test_train_writes_run_dir_and_generate_reads_it(tmp_path) -> None:
    import csv
    import json

    run, result = _train(tmp_path, "--kimg", "0.04", "--grouping", "uniform", "--set", "fd_every=5")
    assert result.exit_code == 0, result.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["grouping"] == "uniform" and cfg["data"] == "shapes"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert rows[-1]["step"] == "5" and float(rows[-1]["fd"]) > 0
    assert (run / "samples" / "final.png").is_file() and (run / "reals.png").is_file()
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["generate", "--ckpt", str(run), "--seeds", "0-3,7", "--trunc", "0.7",
                                       "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "5 samples" in result.output
    # a second train into the same run dir is refused; --resume continues it to a larger budget
    _, again = _train(tmp_path, "--kimg", "0.04")
    assert again.exit_code == 2 and "--resume" in again.output
    refused = CliRunner().invoke(main, ["train", "--run-dir", str(run), "--resume", "--set", "groups=2"])
    assert refused.exit_code == 2 and "groups=2" in refused.output
    result = CliRunner().invoke(main, ["train", "--run-dir", str(run), "--resume", "--kimg", "0.08", "--device", "cpu",
                                       "--threads", "1", "--set", "max_minutes=30"])
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "at iteration 5" in result.output
    steps = [r["step"] for r in csv.DictReader((run / "metrics.csv").open())]
    assert steps[-1] == "10" and len(steps) == len(set(steps))


def test_clean_errors(tmp_path) -> None:
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "nope"), "--preset", "tiny",
                                       "--run-dir", str(tmp_path / "r"), "--device", "cpu"])
    assert result.exit_code == 2 and "nope" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()  # bad data: no run dir left behind
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["generate", "--ckpt", str(bad), "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and "bad.pt" in result.output
    result = CliRunner().invoke(main, ["generate", "--ckpt", str(bad), "--seeds", "a-b"])
    assert result.exit_code != 0
    _, result = _train(tmp_path, "--set", "bogus=1")
    assert result.exit_code == 2 and "bogus" in result.output
