"""Fault injection for `rd2 train` through the real CLI (issue 15): kill -9 and resume bit for bit (1 env, CPU),
a diverging run stops with exit 3 and keeps its finite checkpoints, bad counts are refused before anything is
written, a preset key that names no field is an error."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from neurips20_common import UserError, load_checkpoint

from rd2 import config as rd2_config
from rd2.cli import main

TINY = ["--set", "learning_starts=150", "--set", "batch_size=16", "--set", "hidden=16", "--set", "torso_hidden=16",
        "--set", "q_hidden=16", "--set", "dec_batch_size=16", "--set", "decomposition.hidden=16"]


def _train_cmd(run: Path, frames: int) -> list[str]:
    return [sys.executable, "-m", "rd2.cli", "train", "--env", "toy", "--algo", "rd2", "--frames", str(frames),
            "--seed", "3", "--ckpt-every", "200", "--eval-every", "0", "--save-buffer", "--run-dir", str(run),
            "--no-progress", "--threads", "1", *TINY]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    return {f"{net}.{k}": v for net in ("online", "target") for k, v in state["agent"][net].items()}


def test_kill_9_then_resume_is_bit_identical(tmp_path) -> None:
    frames = 1600
    full = tmp_path / "full"
    subprocess.run(_train_cmd(full, frames), check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed, frames), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as a checkpoint after the warm-up (updates have run) exists
        if any(int(p.stem.split("-")[1]) >= 600 for p in (killed / "checkpoints").glob("ckpt-*.pt")):
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed; raise frames")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / f"ckpt-{frames:09d}.pt").exists()

    res = subprocess.run([sys.executable, "-m", "rd2.cli", "train", "--run-dir", str(killed), "--resume",
                          "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "not bit-exact" not in res.stdout
    a = _weights(full / "checkpoints" / f"ckpt-{frames:09d}.pt")
    b = _weights(killed / "checkpoints" / f"ckpt-{frames:09d}.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill -9 + resume"
    rows_a = (full / "progress.csv").read_text().splitlines()
    rows_b = (killed / "progress.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b)  # no row lost or duplicated


def test_divergence_stops_with_exit_3_and_keeps_finite_checkpoints(tmp_path) -> None:
    run = tmp_path / "nan"
    res = CliRunner().invoke(main, ["train", "--env", "toy", "--frames", "3000", "--set", "lr=1e6", "--set",
                                    "learning_starts=600", "--ckpt-every", "200", "--eval-every", "0", "--run-dir",
                                    str(run), "--no-progress"])
    assert res.exit_code == 3, res.output
    assert "diverged" in res.output or "NaN" in res.output
    assert "last finite checkpoint is" in res.output
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert ckpts, "the checkpoints of the finite warm-up must survive"
    for p in ckpts:  # every kept checkpoint loads (checksum) and is finite
        for v in _weights(p).values():
            assert not v.is_floating_point() or torch.isfinite(v).all()


@pytest.mark.parametrize("args", [["--frames", "0"], ["--frames", "-4"], ["--num-envs", "0"],
                                  ["--eval-episodes", "0"], ["--ckpt-every", "-1"], ["--set", "batch_size=0"],
                                  ["--set", "train_freq=-1"], ["--set", "gamma=1.5"], ["--sticky", "2"],
                                  ["--K", "0"]])
def test_bad_counts_are_user_errors_and_write_nothing(tmp_path, args) -> None:
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--env", "toy", "--run-dir", str(run), "--no-progress", *args])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.output.startswith("Error:")
    assert not run.exists()


def test_existing_run_dir_is_refused_not_clobbered(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "progress.csv").write_text("step\n1\n")
    res = CliRunner().invoke(main, ["train", "--env", "toy", "--frames", "100", "--run-dir", str(run)])
    assert res.exit_code == 2 and "already holds a run" in res.output
    assert (run / "progress.csv").read_text() == "step\n1\n"


def test_preset_key_matching_no_field_is_an_error(monkeypatch) -> None:
    monkeypatch.setitem(rd2_config.TRAIN_PRESETS, "broken", {"all": {"learning_rate": 1e-3}})
    with pytest.raises(UserError, match="learning_rate"):
        rd2_config.agent_config("dqn", "broken")
    # a section for one algorithm applies to it only
    assert rd2_config.agent_config("dqn", "toy").lr == 1e-3
    assert rd2_config.agent_config("rd2", "toy").decomposition.mask_type == "const"


def test_sigterm_during_start_up_still_leaves_a_resumable_checkpoint(tmp_path) -> None:
    from rd2 import train as tr

    cfg = tr.TrainConfig(env="toy", algo="dqn", preset="toy", frames=400, seed=0, eval_every=0, ckpt_every=0,
                         progress=False)
    acfg = tr.agent_config("dqn", "toy", {"learning_starts": 100, "batch_size": 16, "hidden": 16,
                                          "torso_hidden": 16})
    tr.request_stop(signal.SIGTERM, None)  # arrives before the trainer exists (imports, env building)
    summary = tr.train(cfg, acfg, run_dir=tmp_path / "run")
    assert summary["interrupted"] and summary["step"] == 0
    assert Path(summary["checkpoint"]).exists()
    with pytest.raises(KeyboardInterrupt):  # inside the loop it interrupts like Ctrl-C
        tr._STOP["in_loop"] = True
        try:
            tr.request_stop(signal.SIGTERM, None)
        finally:
            tr._STOP["in_loop"] = False
    done = tr.train(cfg, acfg, resume=tmp_path / "run")  # the stop was consumed: the resumed run goes to the end
    assert not done["interrupted"] and done["step"] == 400
