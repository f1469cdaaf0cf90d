"""Fault injection through the real entry point (issue 15): kill -9 a `sarigan train` process, resume it through
the CLI, and compare with an uninterrupted run bit for bit; NaN guard; bad counts rejected with one line."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from neurips20_common import CheckpointManager, load_checkpoint

TRAIN = [sys.executable, "-m", "sarigan.cli", "train", "--data", "shapes", "--preset", "tiny", "--device", "cpu",
         "--threads", "1"]
# fd_every > 0 (the tiny preset's 5) is the case that was not exact (the tracker's extractor drew from the global RNG)
TOTAL_KIMG = "0.8"  # 100 iterations of batch 8; checkpoints every 5


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env())


def _final_state(run: Path) -> dict:
    latest = CheckpointManager(run / "checkpoints").latest()
    assert latest is not None
    return load_checkpoint(latest)


def _assert_same_tensors(a: object, b: object, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _metric_rows(run: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for r in rows:
        r.pop("sec_per_it", None)  # wall-clock
    return rows


def test_kill9_then_resume_through_cli_is_bit_exact(tmp_path: Path) -> None:
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    done = _run([*TRAIN, "--kimg", TOTAL_KIMG, "--run-dir", str(ref)])
    assert done.returncode == 0, done.stderr[-2000:]

    # the same command, killed with SIGKILL once it has written the checkpoint of iteration ≥ 40
    proc = subprocess.Popen([*TRAIN, "--kimg", TOTAL_KIMG, "--run-dir", str(cut)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            steps = CheckpointManager(cut / "checkpoints").steps() if (cut / "checkpoints").is_dir() else []
            if steps and steps[-1] >= 40:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = CheckpointManager(cut / "checkpoints").steps()[-1]
    assert 40 <= killed_at < 100

    resumed = _run([*TRAIN[:3], "train", "--run-dir", str(cut), "--resume", "--threads", "1"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at iteration {killed_at}" in resumed.stdout

    a, b = _final_state(ref), _final_state(cut)
    assert a["step"] == b["step"] == 100
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "pl_mean", "rng"):
        _assert_same_tensors(a[key], b[key], key)
    # the metrics log (including the Fréchet trend) has one row per logged step and the same values
    ra, rb = _metric_rows(ref), _metric_rows(cut)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    assert ra == rb


def _cli(*args: str):
    from click.testing import CliRunner

    from sarigan.cli import main

    return CliRunner().invoke(main, list(args))


def test_nan_from_the_cli_exits_3_with_one_line(tmp_path: Path) -> None:
    run = tmp_path / "r"
    res = _run([*TRAIN, "--run-dir", str(run), "--set", "lr=1e6"])
    assert res.returncode == 3, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "LinAlgError" not in res.stderr
    assert "NaN/Inf at iteration 1" in res.stderr and "no finite checkpoint" in res.stderr
    assert not list((run / "checkpoints").glob("*.pt")) if (run / "checkpoints").exists() else True


def test_nan_mid_run_keeps_the_finite_checkpoints(tmp_path: Path) -> None:
    from neurips20_common import NonFiniteError, RunDir

    from sarigan.config import get_preset
    from sarigan.data import load_shapes
    from sarigan.train import Trainer

    class Poisoned(Trainer):  # a parameter turns NaN after iteration 12 (past the checkpoints of 5 and 10)
        def train_step(self) -> dict[str, float]:
            stats = super().train_step()
            if self.step == 12:
                with torch.no_grad():
                    self.G.convs[0].conv.weight.fill_(float("nan"))
            return stats

    run = RunDir(tmp_path / "run")
    tr = Poisoned(get_preset("tiny"), load_shapes(8, n=256), seed=0)
    with pytest.raises(NonFiniteError) as err:
        tr.fit(0.8, run, log=lambda m: None)
    msg = str(err.value)
    assert "iteration 13" in msg and "ckpt-000000010.pt" in msg
    mgr = CheckpointManager(run.checkpoints)
    assert mgr.steps() == [5, 10]
    for step in mgr.steps():  # loadable (checksum verified) and finite
        state = load_checkpoint(mgr.path_for(step))
        assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
    rows = list(csv.DictReader((run.path / "metrics.csv").open()))
    assert rows[-1]["step"] == "13" and rows[-1]["loss_g"] == "nan"  # the diverged row is logged, not hidden


@pytest.mark.parametrize("args, word", [
    (["--kimg", "0"], "kimg"), (["--kimg", "-1"], "kimg"), (["--batch", "0"], "batch"),
    (["--groups", "0"], "groups"), (["--threads", "0"], "threads"), (["--set", "ckpt_every=0"], "ckpt_every"),
    (["--set", "log_every=-5"], "log_every"), (["--set", "d_reg_every=0"], "d_reg_every"),
    (["--set", "lr=nan"], "lr"), (["--set", "mixing=2"], "mixing"), (["--set", "kimg=abc"], "kimg"),
])
def test_bad_counts_are_user_errors(tmp_path: Path, args: list[str], word: str) -> None:
    run = tmp_path / "r"
    res = _cli("train", "--preset", "tiny", "--run-dir", str(run), "--device", "cpu", "--threads", "1", *args)
    assert res.exit_code == 2, res.output
    assert word in res.output and len(res.output.strip().splitlines()) == 1
    assert not run.exists()


def test_run_dir_policy_files_and_device(tmp_path: Path) -> None:
    import json

    run = tmp_path / "r"
    base = ["train", "--preset", "tiny", "--kimg", "0.04", "--run-dir", str(run), "--device", "auto", "--threads", "1"]
    old = os.umask(0o022)
    try:
        assert _cli(*base).exit_code == 0
    finally:
        os.umask(old)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["device"] == "cpu"  # the resolved device, not "auto"
    ckpt = CheckpointManager(run / "checkpoints").latest()
    assert ckpt is not None and (ckpt.stat().st_mode & 0o777) == 0o644
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 5 and "fd" in summary["final"]
    refused = _cli(*base)
    assert refused.exit_code == 2 and "--resume" in refused.output and "--force" in refused.output
    assert ckpt.is_file()  # untouched
    forced = _cli(*base, "--force")
    assert forced.exit_code == 0, forced.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("r.old-")]
    assert len(aside) == 1 and (aside[0] / "checkpoints" / ckpt.name).is_file()  # moved aside, never deleted
    missing = _cli("train", "--run-dir", str(tmp_path / "none"), "--resume")
    assert missing.exit_code == 2 and "does not exist" in missing.output
