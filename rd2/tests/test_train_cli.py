"""The `train`, `evaluate` and `plot` verbs end to end on the toy game, and their error messages."""

from click.testing import CliRunner

from rd2.cli import main

TINY = ["--set", "learning_starts=100", "--set", "batch_size=8", "--set", "hidden=16", "--set", "torso_hidden=16"]


def test_train_evaluate_plot(tmp_path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(main, ["train", "--env", "toy", "--algo", "hra", "--frames", "300", "--eval-every", "200",
                               "--eval-episodes", "1", "--run-dir", str(run), "--no-progress", *TINY])
    assert res.exit_code == 0, res.output
    header = (run / "progress.csv").read_text().splitlines()[0].split(",")
    for col in ("return_raw", "return_clipped", "ret_gold", "ret_monster", "sps", "epsilon"):
        assert col in header
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    res = runner.invoke(main, ["evaluate", "--ckpt", str(ckpt), "--episodes", "2", "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert "ret_gold" in res.output and (tmp_path / "ev" / "returns.png").is_file()
    assert len((tmp_path / "ev" / "episodes.csv").read_text().splitlines()) == 3
    res = runner.invoke(main, ["plot", str(run), str(run), "--out", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output and (tmp_path / "c.png").is_file()
    # resume continues to a larger budget
    res = runner.invoke(main, ["train", "--resume", str(run), "--frames", "400", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "400 frames" in res.output


def test_cli_errors_are_clear(tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", "--ckpt", str(tmp_path / "nope.pt")])
    assert res.exit_code != 0 and "does not exist" in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = runner.invoke(main, ["saliency", "--ckpt", str(bad)])
    assert res.exit_code == 2 and str(bad) in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["train", "--env", "toy", "--set", "no_such_knob=1", "--run-dir", str(tmp_path / "x")])
    assert res.exit_code != 0 and "no hyperparameter 'no_such_knob'" in res.output
    res = runner.invoke(main, ["train", "--env", "Breakout", "--algo", "hra", "--run-dir", str(tmp_path / "y")])
    assert res.exit_code != 0 and "given reward decomposition" in res.output
    res = runner.invoke(main, ["train", "--env", "NoSuchGame", "--run-dir", str(tmp_path / "z")])
    assert res.exit_code != 0 and "unknown Atari game" in res.output
    res = runner.invoke(main, ["plot", str(tmp_path)])
    assert res.exit_code != 0 and "progress.csv" in res.output
