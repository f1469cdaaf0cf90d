import subprocess
import sys
import textwrap

import pytest
import torch

from neurips20_common import CheckpointError, CheckpointManager, load_checkpoint, save_checkpoint


def test_atomic_save_and_load(tmp_path) -> None:
    p = save_checkpoint(tmp_path / "a" / "c.pt", {"w": torch.arange(3), "step": 7, "cfg": {"lr": 0.1}})
    st = load_checkpoint(p)
    assert st["step"] == 7 and st["cfg"] == {"lr": 0.1} and torch.equal(st["w"], torch.arange(3))
    assert [x.name for x in p.parent.iterdir()] == ["c.pt"]  # no temp file left behind


def test_refuses_unsafe_content(tmp_path) -> None:
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(tmp_path / "c.pt", {"obj": object()})
    assert not (tmp_path / "c.pt").exists()


def test_truncated_and_foreign_files_give_clear_errors(tmp_path) -> None:
    p = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(100, 100)})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.pt is truncated or corrupt"):
        load_checkpoint(p)
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint written by this project"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_keep_last_and_best(tmp_path) -> None:
    m = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        m.save(step, {"v": torch.tensor(step)}, best=step == 2)
    assert m.steps() == [3, 4]
    assert load_checkpoint(m.latest())["step"] == 4
    assert load_checkpoint(m.best())["step"] == 2


TRAIN = textwrap.dedent("""
    import sys, torch
    from neurips20_common import (seed_everything, capture_rng_state, restore_rng_state,
                                  save_checkpoint, load_checkpoint)
    mode, steps, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    gens = seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)
    start = 0
    if mode == "resume":
        st = load_checkpoint(path)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        restore_rng_state(st["rng"], gens); start = st["step"]
    for step in range(start, start + steps):
        x = torch.randn(32, 8, generator=gens["torch"])
        noise = torch.from_numpy(gens["numpy"].normal(size=(32, 1))).float()
        loss = ((model(x) - x.sum(1, keepdim=True) - noise) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if mode == "save":
        save_checkpoint(path, {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                               "rng": capture_rng_state(gens), "step": start + steps})
    else:
        torch.save(model.state_dict(), path + ".final")
""")


def test_resume_is_bit_identical_across_processes(tmp_path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    n = 5
    run = lambda *a: subprocess.run([sys.executable, str(script), *a], check=True)  # noqa: E731
    run("full", str(2 * n), str(tmp_path / "full"))
    run("save", str(n), str(tmp_path / "half.pt"))
    run("resume", str(n), str(tmp_path / "half.pt"))
    full = torch.load(tmp_path / "full.final", weights_only=True)
    resumed = torch.load(tmp_path / "half.pt.final", weights_only=True)
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
