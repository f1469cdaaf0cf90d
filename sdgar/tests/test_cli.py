import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdgar import __version__
from sdgar.cli import main

FAST = ["--synthetic-size", "tiny", "--threads", "1", "--device", "cpu", "--set", "model.dis_emb_dim=8",
        "--set", "model.gen_emb_dim=4", "--set", "model.gen_sample_num_item=8",
        "--set", "model.gen_sample_num_user=8"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_help_lists_verbs() -> None:
    result = run("--help")
    assert result.exit_code == 0, result.output
    for verb in ["train", "evaluate", "recommend", "data", "compare", "benchmark"]:
        assert verb in result.output


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = run("train", "--data", "synthetic", "--epochs", "2", "--eval-every", "1", "--run-dir", str(run_dir),
                 *FAST)
    assert result.exit_code == 0, result.output
    assert "NDCG" in result.output and "epoch 2/2" in result.output
    return run_dir


def test_train_writes_run_dir_and_never_overwrites(trained: Path) -> None:
    assert (trained / "config.json").is_file() and (trained / "metrics.csv").is_file()
    assert (trained / "checkpoints" / "best.pt").is_file() and (trained / "dataset.npz").is_file()
    config = json.loads((trained / "config.json").read_text())
    assert config["train"]["device"] == "cpu" and config["train"]["seed"] == 0  # resolved device, seed default 0
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "done" and summary["best_epoch"] in (1, 2) and "NDCG@50" in summary["final"]
    for f in [*trained.iterdir(), *(trained / "checkpoints").iterdir()]:
        if f.is_file():
            assert f.stat().st_mode & 0o777 == 0o644, f
    before = (trained / "checkpoints" / "best.pt").read_bytes()
    again = run("train", "--data", "synthetic", "--epochs", "1", "--run-dir", str(trained), *FAST)
    assert again.exit_code == 2 and "--resume" in again.output and "--force" in again.output
    assert (trained / "checkpoints" / "best.pt").read_bytes() == before  # the first run is left alone
    more = run("train", "--resume", "--run-dir", str(trained), "--epochs", "3")
    assert more.exit_code == 0, more.output
    assert "epoch 3/3" in more.output


def test_force_moves_the_old_run_aside(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    assert run("train", "--data", "synthetic", "--epochs", "1", "--run-dir", str(run_dir), *FAST).exit_code == 0
    old = (run_dir / "checkpoints" / "best.pt").read_bytes()
    result = run("train", "--data", "synthetic", "--epochs", "1", "--seed", "1", "--run-dir", str(run_dir),
                 "--force", *FAST)
    assert result.exit_code == 0, result.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("r.old-")]
    assert len(aside) == 1 and (aside[0] / "checkpoints" / "best.pt").read_bytes() == old


def test_evaluate_and_recommend(trained: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"  # the run dir is self-contained: no dataset lookup after it moved
    shutil.copytree(trained, moved)
    ckpt = str(moved / "checkpoints" / "best.pt")
    assert run("recommend", "--ckpt", str(moved), "--user", "3", "--k", "2").exit_code == 0  # a run dir works
    result = run("evaluate", "--ckpt", ckpt, "--cutoffs", "5,10")
    assert result.exit_code == 0, result.output
    assert "@10" in result.output and "@50" not in result.output
    result = run("recommend", "--ckpt", ckpt, "--user", "3", "--k", "5")
    assert result.exit_code == 0, result.output
    assert len([line for line in result.output.splitlines() if line.strip()[:1].isdigit()]) == 5
    out = tmp_path / "recs.csv"
    result = run("recommend", "--ckpt", ckpt, "--all", "--k", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert rows[0].keys() == {"user", "rank", "item", "score"} and len(rows) == 3 * 300


def test_error_paths(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [
        (["train", "--data", "nowhere-dataset"], "neither a known dataset"),
        (["train"], "--data is required"),
        (["train", "--data", "gowalla", "--data-root", str(tmp_path / "empty")], "Put train.txt and test.txt"),
        (["train", "--data", "synthetic", "--set", "model.nope=1"], "model.nope: unknown key"),
        (["train", "--data", "synthetic", "--set", "oops"], "KEY=VALUE"),
        (["train", "--data", "synthetic", "--set", "model.dis_emb_dim=abc"], "expected an integer"),
        (["train", "--data", "synthetic", "--set", "train.epochs=0"], "train.epochs must be a positive"),
        (["train", "--data", "synthetic", "--epochs", "0"], "--epochs"),
        (["train", "--data", "synthetic", "--valid-frac", "1.5"], "--valid-frac"),
        (["train", "--data", "synthetic", "--model", "nope"], "unknown model"),
        (["train", "--data", "synthetic", "--preset", "nope"], "unknown preset"),
        (["train", "--data", "synthetic", "--device", "cuda:7"], "cuda:7"),
        (["train", "--data", "synthetic", "--device", "cpu", "--precision", "bf16"], "needs a CUDA device"),
        (["train", "--data", "synthetic", "--device", "cpu", "--precision", "fp16"], "needs a CUDA device"),
        (["train", "--resume", "--run-dir", str(tmp_path / "none")], "does not exist"),
        (["train", "--resume"], "--resume needs --run-dir"),
        (["evaluate", "--ckpt", str(tmp_path / "missing.pt")], "does not exist"),
        (["recommend", "--ckpt", str(trained / "checkpoints" / "best.pt")], "exactly one of --user"),
        (["recommend", "--ckpt", str(trained / "checkpoints" / "best.pt"), "--all"], "--out"),
        (["recommend", "--ckpt", str(trained / "checkpoints" / "best.pt"), "--user", "no-such-user"], "not in the"),
        (["recommend", "--ckpt", str(trained), "--user", "3", "--k", "0"], "--k"),
        (["data", "download", "nope"], "unknown dataset"),
        (["data", "download", "echonest"], "no public direct download"),
    ]
    bad = tmp_path / "bad.pt"
    whole = (trained / "checkpoints" / "best.pt").read_bytes()
    bad.write_bytes(whole[: len(whole) // 2])
    cases.append((["evaluate", "--ckpt", str(bad)], "corrupt"))
    bad_data = tmp_path / "bad.txt"
    bad_data.write_text("0\t1\t4.0\n0\toops\t4.0\n")
    cases.append((["data", "info", str(bad_data), "--format", "sdgar"], "line 2"))
    for args, expected in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not (tmp_path / "runs").exists(), args  # nothing half-done is written


def test_data_info_and_list() -> None:
    result = run("data", "info", "synthetic", "--synthetic-size", "tiny")
    assert result.exit_code == 0, result.output
    assert "density" in result.output and "300" in result.output
    result = run("data", "list")
    assert result.exit_code == 0 and "gowalla" in result.output


def test_tensorboard_flag(tmp_path: Path) -> None:
    from neurips20_common.cli import tensorboard_available

    result = run("train", "--data", "synthetic", "--model", "bpr", "--epochs", "2", "--tensorboard",
                 "--run-dir", str(tmp_path / "tb"), *FAST[:6])
    if tensorboard_available():
        assert result.exit_code == 0, result.output
        assert list((tmp_path / "tb" / "tb").glob("events.out.tfevents.*"))
    else:
        assert result.exit_code == 2 and "needs the tensorboard package" in result.output
        assert not (tmp_path / "tb").exists()


def test_new_data_rule(tmp_path: Path) -> None:
    """SD-GAR on a user's own file without --preset takes the new-data preset (best's hyperparameters, early
    stopping on the carved validation split); registered names, synthetic data and other models do not."""
    from sdgar.config import NEW_DATA, PRESETS, make_config

    own = make_config("sdgar", None, {"data": str(tmp_path / "my.csv")})
    assert own.preset == NEW_DATA and own.train.patience > 0 and own.model.engine == "fast"
    assert own.model.dis_sample_num == PRESETS["best"]["model"]["sdgar"]["dis_sample_num"]
    assert make_config("sdgar", None, {"data": "citeulike"}).preset == "citeulike"
    assert make_config("sdgar", None, {"data": "synthetic"}).preset is None
    assert make_config("bpr", None, {"data": str(tmp_path / "my.csv")}).preset is None
    assert make_config("sdgar", "citeulike", {"data": str(tmp_path / "my.csv")}).preset == "citeulike"
    rows = [("who", "what")] + [(f"u{u}", f"i{(u * 7 + k) % 40}") for u in range(30) for k in range(8)]
    path = tmp_path / "my.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    res = CliRunner().invoke(main, ["train", "--data", str(path), "--user-col", "who", "--item-col", "what",
                                    "--epochs", "2", "--threads", "1", "--set", "model.gen_emb_dim=4",
                                    "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["preset"] == NEW_DATA and config["data"]["valid_frac"] == 0.1
