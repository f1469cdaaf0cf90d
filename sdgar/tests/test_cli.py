import csv
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
    assert (trained / "checkpoints" / "best.pt").is_file()
    again = run("train", "--data", "synthetic", "--epochs", "1", "--run-dir", str(trained), *FAST)
    assert again.exit_code == 0 and "--resume" in again.output
    assert (trained.parent / f"{trained.name}-2" / "checkpoints").is_dir()  # the first run is left alone
    more = run("train", "--resume", str(trained), "--epochs", "3")
    assert more.exit_code == 0, more.output
    assert "epoch 3/3" in more.output


def test_evaluate_and_recommend(trained: Path, tmp_path: Path) -> None:
    ckpt = str(trained / "checkpoints" / "best.pt")
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
        (["train", "--data", "synthetic", "--set", "model.nope=1"], "unknown SDGARConfig keys"),
        (["train", "--data", "synthetic", "--set", "oops"], "SECTION.KEY=VALUE"),
        (["train", "--data", "synthetic", "--model", "nope"], "unknown model"),
        (["train", "--data", "synthetic", "--preset", "nope"], "unknown preset"),
        (["train", "--data", "synthetic", "--device", "cuda:7"], "cuda:7"),
        (["train", "--data", "synthetic", "--device", "cpu", "--precision", "bf16"], "needs a CUDA device"),
        (["train", "--data", "synthetic", "--device", "cpu", "--precision", "fp16"], "needs a CUDA device"),
        (["train", "--data", "synthetic", "--resume", str(tmp_path / "none")], "does not exist"),
        (["evaluate", "--ckpt", str(tmp_path / "missing.pt")], "does not exist"),
        (["recommend", "--ckpt", str(trained / "checkpoints" / "best.pt")], "exactly one of --user"),
        (["recommend", "--ckpt", str(trained / "checkpoints" / "best.pt"), "--all"], "--out"),
        (["recommend", "--ckpt", str(trained / "checkpoints" / "best.pt"), "--user", "no-such-user"], "not in dataset"),
        (["data", "download", "nope"], "unknown dataset"),
        (["data", "download", "echonest"], "no public direct download"),
    ]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cases.append((["evaluate", "--ckpt", str(bad)], "corrupt"))
    bad_data = tmp_path / "bad.txt"
    bad_data.write_text("0\t1\t4.0\n0\toops\t4.0\n")
    cases.append((["data", "info", str(bad_data), "--format", "sdgar"], "line 2"))
    for args, expected in cases:
        result = run(*args)
        assert result.exit_code != 0, args
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert not (tmp_path / "runs").exists(), args  # nothing half-done is written


def test_data_info_and_list() -> None:
    result = run("data", "info", "synthetic", "--synthetic-size", "tiny")
    assert result.exit_code == 0, result.output
    assert "density" in result.output and "300" in result.output
    result = run("data", "list")
    assert result.exit_code == 0 and "gowalla" in result.output
