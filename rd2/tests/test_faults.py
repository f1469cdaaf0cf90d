"""Fault injection for `rd2 decompose` (issue 15): kill -9 and resume through the real CLI, NaN, bad counts, an
existing run dir, a corrupt checkpoint, and collapse detection (issue 18) on a small synthetic image game."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from neurips20_common import CheckpointManager, load_checkpoint

from rd2.cli import main

TESTS = Path(__file__).parent
TOY = ["--env", "toy", "--steps", "3000", "--num-envs", "2", "--iters", "60", "--batch-size", "16",
       "--eval-every", "20", "--eval-samples", "50", "--ckpt-every", "20", "--threads", "1", "--no-progress"]
SYNTH = ["--env", "synthetic_env:make_env", "--steps", "3000", "--num-envs", "2", "--batch-size", "32",
         "--eval-every", "100", "--eval-samples", "200", "--ckpt-every", "100", "--threads", "1", "--no-progress",
         "--reward-sources", "1=coin,-2=bomb"]


def _cli(*args: str):
    return CliRunner().invoke(main, ["decompose", *args])


def _final_model(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(CheckpointManager(run / "checkpoints").latest())["model"]


def test_kill9_then_resume_is_bit_exact_through_the_cli(tmp_path) -> None:
    """A real process killed with SIGKILL after a checkpoint, resumed with --resume: the same final weights and
    metrics rows as an uninterrupted run. The replay is not kept: the resume collects the same Pong transitions
    again and checks their fingerprint."""
    args = ["--env", "PongNoFrameskip-v4", "--steps", "1200", "--num-envs", "2", "--iters", "200", "--batch-size", "4",
            "--eval-every", "20", "--eval-samples", "8", "--ckpt-every", "20", "--threads", "1", "--no-progress"]
    exe = [sys.executable, "-m", "rd2.cli", "decompose"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    straight, split = tmp_path / "straight", tmp_path / "split"
    subprocess.run([*exe, *args, "--run-dir", str(straight)], check=True, capture_output=True, env=env)
    proc = subprocess.Popen([*exe, *args, "--run-dir", str(split)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    ckpt = split / "checkpoints" / "ckpt-000000040.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (split / "purity.json").exists()
    # the convention of all three CLIs: `--run-dir DIR --resume` (rd2 also takes `--resume DIR`)
    res = subprocess.run([*exe, "--run-dir", str(split), "--resume"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "collecting the same transitions again" in res.stdout
    a, b = _final_model(straight), _final_model(split)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    import pandas as pd

    ma, mb = pd.read_csv(straight / "metrics.csv"), pd.read_csv(split / "metrics.csv")
    assert ma["step"].tolist() == mb["step"].tolist() == list(range(20, 201, 20))
    np.testing.assert_array_equal(ma["L_sum"].to_numpy(), mb["L_sum"].to_numpy())
    pa, pb = (json.loads((d / "purity.json").read_text()) for d in (straight, split))
    assert pa["balanced_purity"] == pb["balanced_purity"] and pa["confusion"] == pb["confusion"]


def test_resume_refuses_different_transitions(tmp_path) -> None:
    run = tmp_path / "r"
    assert _cli(*TOY, "--run-dir", str(run)).exit_code == 0
    info = json.loads((run / "collection.json").read_text())
    info["fingerprint"] = "0" * 64
    (run / "collection.json").write_text(json.dumps(info))
    res = _cli("--resume", str(run), "--iters", "80")
    assert res.exit_code == 2 and "cannot be resumed exactly" in res.output


def test_nan_learning_rate_stops_without_a_purity(tmp_path) -> None:
    run = tmp_path / "nan"
    res = _cli(*TOY, "--lr", "1e6", "--warmup", "0", "--run-dir", str(run))
    assert res.exit_code == 3, res.output
    assert "NaN/Inf" in res.output and "balanced purity" not in res.output
    assert not (run / "purity.json").exists() and not (run / "sub_rewards.csv").exists()
    for ckpt in (run / "checkpoints").glob("*.pt"):  # whatever was saved is finite
        state = load_checkpoint(ckpt)["model"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


@pytest.mark.parametrize(("flag", "value"), [("--num-envs", "0"), ("--steps", "0"), ("--iters", "-1"),
                                             ("--batch-size", "0"), ("--eval-every", "0"), ("--ckpt-every", "0"),
                                             ("--threads", "0"), ("--K", "0"), ("--lr", "-1")])
def test_zero_or_negative_counts_are_rejected(tmp_path, flag, value) -> None:
    run = tmp_path / "x"
    res = _cli(*TOY, flag, value, "--run-dir", str(run))
    assert res.exit_code == 2, res.output
    assert flag.split("-")[-1] in res.output.replace("_", "-") and "Traceback" not in res.output
    assert not run.exists()  # nothing collected, nothing written


def test_bad_env_and_reward_sources(tmp_path) -> None:
    res = _cli("--env", "no_such_module:make", "--run-dir", str(tmp_path / "a"))
    assert res.exit_code == 2 and "cannot import" in res.output
    res = _cli(*TOY, "--reward-sources", "ten=pellet", "--run-dir", str(tmp_path / "b"))
    assert res.exit_code == 2 and "VALUE=NAME" in res.output


def test_existing_run_is_never_deleted(tmp_path) -> None:
    run = tmp_path / "run"
    assert _cli(*TOY, "--run-dir", str(run)).exit_code == 0
    before = (run / "purity.json").read_bytes()
    res = _cli(*TOY, "--run-dir", str(run))
    assert res.exit_code == 2 and "already holds a run" in res.output
    assert (run / "purity.json").read_bytes() == before
    res = _cli(*TOY, "--seed", "1", "--run-dir", str(run), "--force")
    assert res.exit_code == 0, res.output
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "purity.json").read_bytes() == before


def test_corrupt_checkpoint_is_reported_on_resume(tmp_path) -> None:
    run = tmp_path / "c"
    assert _cli(*TOY, "--run-dir", str(run)).exit_code == 0
    ckpt = CheckpointManager(run / "checkpoints").latest()
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    res = _cli("--resume", str(run), "--iters", "80")
    assert res.exit_code == 2 and ckpt.name in res.output and "Traceback" not in res.output


def test_same_sign_sources_are_separated_and_mixing_is_reported(tmp_path, monkeypatch) -> None:
    """Issue 18 (Gopher): two sources of one sign (coin +1, bomb +5). Without L_value (--lambda-value 0) each
    channel holds a share of both and the run warns that the channels mix the sources; the default separates them
    (each source's reward in one channel)."""
    monkeypatch.syspath_prepend(str(TESTS))
    same = [a if a != "synthetic_env:make_env" else "synthetic_env:make_same_sign_env" for a in SYNTH]
    same[same.index("1=coin,-2=bomb")] = "1=coin,5=bomb"
    res = _cli(*same, "--iters", "300", "--run-dir", str(tmp_path / "default"))
    assert res.exit_code == 0, res.output
    good = json.loads((tmp_path / "default" / "purity.json").read_text())
    assert good["head_signs"] == "+,+" and good["balanced_purity"] >= 0.9, good
    assert min(good["health"]["separation"].values()) >= 0.9 and "mix the reward sources" not in res.output
    res = _cli(*same, "--iters", "300", "--lambda-value", "0", "--run-dir", str(tmp_path / "off"))
    assert res.exit_code == 0, res.output
    off = json.loads((tmp_path / "off" / "purity.json").read_text())
    assert min(off["health"]["separation"].values()) < 0.75 and "mix the reward sources" in res.output


def test_synthetic_images_learn_and_dead_heads_are_reported_as_failed(tmp_path, monkeypatch) -> None:
    """Issue 18: a decomposition on a small image game learns (both sources separated); the same run with its
    torso killed (every ReLU dead, so the sub-rewards no longer depend on the input) is reported as collapsed,
    with no success line, and --strict exits 4."""
    monkeypatch.syspath_prepend(str(TESTS))
    run = tmp_path / "synth"
    res = _cli(*SYNTH, "--iters", "300", "--run-dir", str(run))
    assert res.exit_code == 0, res.output
    good = json.loads((run / "purity.json").read_text())
    assert not good["health"]["collapsed"], good["health"]
    assert good["balanced_purity"] >= 0.9 and good["sources"] == ["coin", "bomb"]
    assert "WARNING" not in res.output and "balanced purity" in res.output

    # kill the torso: the last conv's biases far below zero -> its ReLUs output 0 for every input
    mgr = CheckpointManager(run / "checkpoints")
    state = load_checkpoint(mgr.latest())
    state["model"]["torso.net.4.bias"] = torch.full_like(state["model"]["torso.net.4.bias"], -1e4)
    mgr.save(int(state["step"]), state)
    res = _cli("--resume", str(run))
    assert res.exit_code == 0, res.output
    dead = json.loads((run / "purity.json").read_text())
    assert dead["health"]["collapsed"] and dead["health"]["sum_std"] < 1e-6
    assert "FAILED (collapsed)" in res.output
    assert not any(line.startswith("make_env:") for line in res.output.splitlines())  # no success line
    res = _cli("--resume", str(run), "--strict")
    assert res.exit_code == 4 and "collapsed" in res.output
