"""The shared CLI conventions: exit codes, --set, run-dir policy, --ckpt, --out, NaN guard, checkpoint safety."""

from __future__ import annotations

import dataclasses
import os
import random
import stat
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from neurips20_common import (
    CheckpointError,
    CheckpointManager,
    FiniteGuard,
    NonFiniteError,
    RunningMean,
    UserError,
    load_checkpoint,
    save_checkpoint,
)
from neurips20_common.checkpoint import current_umask
from neurips20_common.cli import (
    Group,
    apply_set,
    check_fraction,
    check_positive,
    parse_set,
    prepare_run_dir,
    resolve_checkpoint,
    write_out,
)


@click.group(cls=Group)
def demo() -> None:
    pass


@demo.command()
@click.argument("kind")
def fail(kind: str) -> None:
    if kind == "user":
        raise UserError("bad input in x.csv line 3; fix it")
    if kind == "nan":
        raise NonFiniteError("loss became NaN at step 7")
    if kind == "full":
        raise OSError(28, "No space left on device", "/tmp/x.pt")
    raise ZeroDivisionError("a bug")


def test_exit_codes() -> None:
    runner = CliRunner()
    user = runner.invoke(demo, ["fail", "user"])
    assert user.exit_code == 2 and "x.csv line 3" in user.output and "Traceback" not in user.output
    assert runner.invoke(demo, ["fail", "nan"]).exit_code == 3
    full = runner.invoke(demo, ["fail", "full"])
    assert full.exit_code == 2 and "/tmp/x.pt" in full.output and "space" in full.output
    bug = runner.invoke(demo, ["fail", "bug"])
    assert bug.exit_code == 1 and isinstance(bug.exception, ZeroDivisionError)
    assert runner.invoke(demo, ["nope"]).exit_code == 2  # click usage error


@dataclasses.dataclass(frozen=True)
class Inner:
    k: int = 3
    lr: float = 1e-3
    name: str = "a"


@dataclasses.dataclass(frozen=True)
class Outer:
    epochs: int = 10
    flag: bool = False
    cutoffs: tuple[int, ...] = (10, 20)
    opt: float | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_set_parser_typed_and_nested() -> None:
    cfg = apply_set(Outer(), parse_set(["epochs=5", "inner.lr=3e-4", "flag=true", "cutoffs=5,10", "opt=none",
                                        "inner.name=b"]))
    assert cfg == Outer(epochs=5, flag=True, cutoffs=(5, 10), opt=None, inner=Inner(lr=3e-4, name="b"))
    with pytest.raises(UserError, match="unknown key; valid keys: epochs"):
        apply_set(Outer(), {"epoch": 3})
    with pytest.raises(UserError, match="expected an integer"):
        apply_set(Outer(), parse_set(["epochs=2.5"]))
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_set(["epochs"])
    with pytest.raises(UserError, match="section"):
        apply_set(Outer(), {"inner": 3})


def test_value_checks() -> None:
    check_positive("--epochs", 1)
    for bad in (0, -1, None, float("nan")):
        with pytest.raises(UserError, match="--epochs"):
            check_positive("--epochs", bad)
    check_fraction("--valid-frac", 0.1)
    with pytest.raises(UserError, match=r"\(0, 1\)"):
        check_fraction("--valid-frac", 1.0)


def test_run_dir_policy_never_deletes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_run_dir(run)  # new
    (run / "result.json").write_text("{}")
    with pytest.raises(UserError, match="--resume"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, resume=True).path == run
    prepare_run_dir(run, force=True)
    assert not any(run.iterdir())
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(moved) == 1 and (moved[0] / "result.json").is_file()
    with pytest.raises(UserError, match="does not exist"):
        prepare_run_dir(tmp_path / "nope", resume=True)


def test_resolve_checkpoint(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "checkpoints")
    mgr.save(1, {"w": torch.zeros(2)})
    mgr.save(2, {"w": torch.ones(2)}, best=True)
    mgr.save(3, {"w": torch.ones(2)})
    assert resolve_checkpoint(tmp_path).name == "best.pt"
    assert resolve_checkpoint(tmp_path, prefer="latest") == mgr.path_for(3)
    assert resolve_checkpoint(mgr.path_for(1)) == mgr.path_for(1)
    with pytest.raises(UserError, match="no checkpoint"):
        (tmp_path / "empty").mkdir()
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing")


def test_write_out_through_symlink_and_devices(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_out(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    write_out(tmp_path / "sub" / "fresh.txt", b"x")
    assert (tmp_path / "sub" / "fresh.txt").read_bytes() == b"x"
    assert not list(tmp_path.rglob("*.tmp"))
    if Path("/dev/full").exists():
        with pytest.raises(UserError, match="/dev/full"):
            write_out("/dev/full", "x" * 10000)
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # still the device node


def test_guard_names_step_and_last_checkpoint(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(4, {"w": torch.ones(1)})
    guard = FiniteGuard(every=2, checkpoints=mgr, what="epoch")
    guard.check(5, loss=1.0)
    with pytest.raises(NonFiniteError, match=r"loss became NaN/Inf at epoch 6.*ckpt-000000004"):
        guard.check(6, loss=float("nan"))
    net = torch.nn.Linear(2, 2)
    guard.check_module(1, net)
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    guard.check_module(2, net)  # skipped by the cadence
    with pytest.raises(NonFiniteError, match="weight"):
        guard.check_module(3, net)


def test_nonfinite_checkpoint_refused_and_finite_ones_kept(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(1, {"w": torch.ones(3)}, best=True)
    with pytest.raises(NonFiniteError, match="NaN"):
        mgr.save(2, {"w": torch.tensor([1.0, float("nan")])}, best=True)
    assert mgr.steps() == [1]
    assert torch.equal(load_checkpoint(mgr.best())["w"], torch.ones(3))
    assert not list(tmp_path.glob("*.tmp"))


def test_best_is_written_before_the_step_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import neurips20_common.checkpoint as ck

    written: list[str] = []
    real = ck.save_checkpoint
    monkeypatch.setattr(ck, "save_checkpoint", lambda p, s, **k: (written.append(Path(p).name), real(p, s))[1])
    CheckpointManager(tmp_path).save(7, {"w": torch.ones(1)}, best=True)
    assert written == ["best.pt", "ckpt-000000007.pt"]


def test_checksum_catches_a_flipped_byte(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(4096, dtype=torch.float32)})
    # 0644 under the usual umask, not mkstemp's 0600
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()
    raw = bytearray(path.read_bytes())
    # flip a byte inside the tensor data (the last 4 KiB of the zip hold records; the data sits before them)
    pos = raw.find(torch.arange(4096, dtype=torch.float32)[1000:1002].numpy().tobytes())
    assert pos > 0
    raw[pos] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_payload_refused_as_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "neurips20-checkpoint", "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects") as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value)


def test_disk_full_at_save_is_a_user_error_and_leaves_no_temp(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 123 vs 456")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match=r"c\.pt.*full"):
        save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(1)})
    assert not list(tmp_path.iterdir())


def test_running_mean_counts_nonfinite() -> None:
    rm = RunningMean()
    rm.update(loss=1.0, acc=0.5)
    rm.update(loss=float("nan"), acc=0.7)
    means = rm.means()
    assert rm.nonfinite == {"loss": 1}
    assert means["acc"] == pytest.approx(0.6) and means["loss"] != means["loss"]


def test_garbage_is_corrupt_not_unsafe_and_str_subclasses_are_stored(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02" + random.Random(0).randbytes(3000))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(junk)
    path = save_checkpoint(tmp_path / "v.pt", {"torch": torch.__version__, "n": torch.tensor(1)})
    assert type(load_checkpoint(path)["torch"]) is str


def test_set_accepts_inf_for_the_guard_to_catch() -> None:
    assert apply_set(Inner(), parse_set(["lr=inf"])).lr == float("inf")
