import pandas as pd
import pytest

from neurips20_common import MetricsLogger, RunDir, RunningMean, UserError, progress


def test_run_dir_config_and_metrics(tmp_path) -> None:
    run = RunDir.create(tmp_path, "exp")
    assert RunDir.create(tmp_path, "exp").path.name == "exp-2"
    run.write_config({"lr": 0.1, "path": tmp_path})
    assert run.read_config()["lr"] == 0.1
    log = run.metrics()
    log.log({"step": 1, "loss": 0.5})
    log.log({"step": 2, "loss": 0.4, "ndcg": 0.1})  # new column widens the header
    df = pd.read_csv(run.file("metrics.csv"))
    assert list(df.columns) == ["step", "loss", "ndcg"] and len(df) == 2


def test_metrics_resume_drops_rows_after_checkpoint(tmp_path) -> None:
    path = tmp_path / "metrics.csv"
    log = MetricsLogger(path)
    for s in range(1, 6):
        log.log({"step": s, "loss": 1.0 / s})
    log = MetricsLogger(path, resume_step=3)  # checkpoint was at step 3; steps 4-5 get redone
    log.log({"step": 4, "loss": 0.0})
    df = pd.read_csv(path)
    assert df["step"].tolist() == [1, 2, 3, 4] and df["loss"].iloc[-1] == 0.0


def test_open_missing_run_dir(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        RunDir.open(tmp_path / "nope")


def test_running_mean_and_quiet_progress(monkeypatch) -> None:
    m = RunningMean()
    m.update(loss=1.0)
    m.update(loss=3.0)
    assert m.means() == {"loss": 2.0}
    monkeypatch.setenv("CI", "true")
    bar = progress(range(3), desc="x")
    assert bar.disable
    assert list(bar) == [0, 1, 2]
