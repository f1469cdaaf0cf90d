"""Fault injection (issue 15): kill -9 a real `sdgar train` and resume it, corrupt and malicious checkpoints, bad ids,
bad flags, full and read-only disks, diverging training. Every case asserts the exit code and the message."""

import csv
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sdgar.cli import main

TINY = ["--data", "synthetic", "--synthetic-size", "tiny", "--threads", "1", "--device", "cpu",
        "--set", "model.dis_emb_dim=8", "--set", "model.gen_emb_dim=4", "--set", "model.gen_sample_num_item=8",
        "--set", "model.gen_sample_num_user=8"]
EPOCHS = 12


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def train_process(run_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sdgar.cli", "train", *extra, "--run-dir", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)


def final_state(run_dir: Path) -> dict:
    ckpt = run_dir / "checkpoints" / f"ckpt-{EPOCHS:09d}.pt"
    return torch.load(ckpt, weights_only=True)


def test_kill9_then_resume_is_bit_exact(tmp_path: Path) -> None:
    args = [*TINY, "--epochs", str(EPOCHS), "--eval-every", "4"]
    whole = train_process(tmp_path / "whole", *args)
    out, _ = whole.communicate(timeout=300)
    assert whole.returncode == 0, out

    killed = train_process(tmp_path / "killed", *args)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline:  # the chosen point: right after the checkpoint of epoch 3 (or a later one)
        steps = [int(p.name[5:14]) for p in ckpts.glob("ckpt-*.pt")] if ckpts.is_dir() else []
        if steps and max(steps) >= 3:
            break
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not (ckpts / f"ckpt-{EPOCHS:09d}.pt").exists(), "the run finished before the kill"

    resumed = train_process(tmp_path / "killed", "--resume", "--epochs", str(EPOCHS))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    a, b = final_state(tmp_path / "whole"), final_state(tmp_path / "killed")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    rows = {name: list(csv.DictReader((tmp_path / name / "metrics.csv").open())) for name in ("whole", "killed")}
    assert [int(r["epoch"]) for r in rows["killed"]] == list(range(1, EPOCHS + 1))  # no row lost or doubled
    for key in ("loss", "NDCG@50", "P@10"):
        assert [r[key] for r in rows["killed"]] == [r[key] for r in rows["whole"]], key


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "run"
    assert cli("train", *TINY, "--epochs", "2", "--eval-every", "1", "--run-dir", str(path)).exit_code == 0
    return path


def test_flipped_byte_is_reported(run_dir: Path, tmp_path: Path) -> None:
    data = bytearray((run_dir / "checkpoints" / "best.pt").read_bytes())
    for at in (len(data) // 2, len(data) // 3):  # inside the tensor payload
        bad = tmp_path / f"flip-{at}.pt"
        flipped = bytearray(data)
        flipped[at] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        result = cli("evaluate", "--ckpt", str(bad))
        assert result.exit_code == 2 and str(bad) in result.output and "corrupt" in result.output, result.output


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/sdgar-fault-pickle-ran")


def test_pickle_payload_refused(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "neurips20-checkpoint", "version": 1, "model_name": "sdgar", "x": _Payload()}, evil)
    with_pickle = tmp_path / "plain.pkl"
    with_pickle.write_bytes(pickle.dumps(_Payload()))
    for path in (evil, with_pickle):
        for verb in (["evaluate", "--ckpt", str(path)], ["recommend", "--ckpt", str(path), "--user", "0"]):
            result = cli(*verb)
            assert result.exit_code == 2, result.output
            assert "pickle" in result.output and str(path) in result.output
    assert not MARKER.exists()  # never executed


def test_bad_ids_and_scores(tmp_path: Path) -> None:
    def split(name: str, train: str, test: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.txt").write_text(train)
        (folder / "test.txt").write_text(test)
        return folder

    lines = "".join(f"{u}\t{i}\t4.0\n" for u in range(10) for i in range(10))
    negative = split("neg", lines + "3\t-5\t4.0\n", "0\t1\t4.0\n")
    result = cli("data", "info", str(negative))
    assert result.exit_code == 2 and "negative item id -5" in result.output
    assert f"{negative / 'train.txt'}, line 101" in result.output
    for big in ("1000000000000", "40000000"):  # one absurd id must not size the model
        folder = split(f"big{big}", lines + f"3\t{big}\t4.0\n", "0\t1\t4.0\n")
        result = cli("data", "info", str(folder))
        assert result.exit_code == 0, result.output
        assert f"item id {big}" in result.output and "line 101" in result.output and "remapped" in result.output
        assert "items: 11" in result.output
    for value in ("nan", "inf", "-inf"):
        bad = split(f"score-{value}", lines.replace("3\t4\t4.0", f"3\t4\t{value}"), "0\t1\t4.0\n")
        result = cli("data", "info", str(bad))
        assert result.exit_code == 2 and f"{bad / 'train.txt'}, line 35" in result.output, result.output
    unseen = split("unseen", lines, "0\t50\t4.0\n1\t51\t4.0\n2\t3\t4.0\n")
    result = cli("data", "info", str(unseen))
    assert result.exit_code == 0 and "warning: 2 of 2 test interactions are on 2 items never seen" in result.output
    csv = tmp_path / "log.csv"
    csv.write_text("u,i\n1,2\n")
    result = cli("data", "info", str(csv), "--format", "csv")
    assert result.exit_code == 2 and "--user-col" in result.output
    result = cli("data", "info", str(csv), "--format", "csv", "--user-col", "u", "--item-col", "i")
    assert result.exit_code == 0 and "format csv" in result.output


BAD_FLAGS = [
    ["--epochs", "0"], ["--epochs", "-3"], ["--eval-every", "0"], ["--threads", "0"], ["--patience", "-1"],
    ["--valid-frac", "1"], ["--valid-frac", "-0.1"], ["--set", "model.batch_size=0"],
    ["--set", "model.dis_sample_num=0"], ["--set", "model.gen_emb_dim=-1"], ["--set", "model.dis_emb_dim=2.5"],
    ["--set", "model.learning_rate=0"], ["--set", "model.temperature=-1"], ["--set", "train.cutoffs=0,10"],
    ["--set", "train.eval_chunk=0"], ["--set", "data.test_frac=1.0"], ["--set", "model.lr_decay=2"],
    ["--set", "model.optimizer=sgd"], ["--split", "temporal"],
]


@pytest.mark.parametrize("flags", BAD_FLAGS, ids=lambda f: " ".join(f))
def test_bad_flags_exit_2_and_write_nothing(flags: list[str], tmp_path: Path) -> None:
    result = cli("train", *TINY, *flags, "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 2, (flags, result.output)
    assert len(result.output.strip().splitlines()[-1]) < 400
    assert not (tmp_path / "run").exists()


def test_other_verbs_validate_counts(run_dir: Path, tmp_path: Path) -> None:
    for args in (["recommend", "--ckpt", str(run_dir), "--user", "1", "--k", "0"],
                 ["compare", "--data", "synthetic", "--seeds", "0"],
                 ["evaluate", "--ckpt", str(run_dir), "--cutoffs", "0,5"],
                 ["benchmark", "scaling", "--items", "0", "--out", str(tmp_path / "s")]):
        assert cli(*args).exit_code == 2, args


def test_full_and_read_only_disks(run_dir: Path, tmp_path: Path) -> None:
    result = cli("recommend", "--ckpt", str(run_dir), "--all", "--k", "2", "--out", "/dev/full")
    assert result.exit_code == 2 and "/dev/full" in result.output and "space" in result.output
    if os.geteuid() == 0:
        target = Path("/sys/sdgar-fault-run")  # sysfs refuses new folders even to root
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "run"
    result = cli("train", *TINY, "--epochs", "1", "--run-dir", str(target))
    assert result.exit_code == 2 and str(target) in result.output, result.output


def test_divergence_exits_3_and_best_stays_finite(tmp_path: Path) -> None:
    base = ["--model", "bpr", "--data", "synthetic", "--synthetic-size", "tiny", "--threads", "1", "--device", "cpu"]
    result = cli("train", *base, "--epochs", "3", "--set", "model.learning_rate=1e30", "--run-dir", str(tmp_path / "a"))
    assert result.exit_code == 3 and "NaN" in result.output and "epoch 1" in result.output, result.output
    assert '"status": "diverged"' in (tmp_path / "a" / "summary.json").read_text()
    # two good epochs, then the L2 weight is raised by hand (config.json) and the resumed run diverges
    run = tmp_path / "b"
    assert cli("train", *base, "--epochs", "2", "--eval-every", "1", "--run-dir", str(run)).exit_code == 0
    best_before = (run / "checkpoints" / "best.pt").read_bytes()
    config = (run / "config.json").read_text()
    (run / "config.json").write_text(config.replace('"reg": 0.01', '"reg": 1e+38'))
    result = cli("train", "--resume", "--run-dir", str(run), "--epochs", "4")
    assert result.exit_code == 3, result.output
    assert (run / "checkpoints" / "best.pt").read_bytes() == best_before
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in best["model"].values())
    assert any(p.name.startswith("ckpt-") for p in (run / "checkpoints").iterdir())  # a finite one is kept
