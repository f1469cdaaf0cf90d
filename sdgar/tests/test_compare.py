"""`sdgar compare` (tables, time to quality, plot) and `sdgar benchmark scaling` on tiny synthetic data."""

import math

import pandas as pd
import pytest
from click.testing import CliRunner
from neurips20_common import UserError

from sdgar.cli import main
from sdgar.compare import default_target, improvement, parse_epochs, run_compare, same_run, summarize, time_to


def test_parse_epochs() -> None:
    assert parse_epochs(None, ["sdgar", "als"]) == {"als": 15}
    assert parse_epochs("7", ["sdgar", "als"]) == {"sdgar": 7, "als": 7}
    assert parse_epochs("sdgar=9", ["sdgar", "als"]) == {"als": 15, "sdgar": 9}
    with pytest.raises(UserError):
        parse_epochs("bpr=3", ["sdgar", "als"])


def test_time_to_quality_and_improvement() -> None:
    c = pd.DataFrame({"epoch": [2, 4, 6], "train_seconds": [1.0, 2.5, 4.0], "NDCG@50": [0.1, 0.2, 0.15]})
    assert time_to(c, 0.12) == 2.5
    assert time_to(c, 0.2) == 2.5
    assert math.isnan(time_to(c, 0.3))
    runs = pd.DataFrame({"model": ["sdgar", "sdgar", "bpr", "irgan"], "seed": [0, 1, 0, 0],
                         "NDCG@50": [0.11, 0.13, 0.10, 0.08], "train_seconds": [1, 1, 1, 1],
                         "time_to_target": [1.0, math.nan, 2.0, math.nan]})
    summary = summarize(runs)
    row = summary.set_index("model").loc["sdgar"]
    assert row["NDCG@50_mean"] == pytest.approx(0.12) and row["NDCG@50_std"] == pytest.approx(0.01)
    assert row["reached"] == 1 and row["seeds"] == 2
    assert default_target(runs) == (pytest.approx(0.9 * 0.12), "90% of the best mean")
    assert default_target(runs.assign(model=["sdgar", "sdgar", "als", "irgan"]))[0] == pytest.approx(0.10)
    assert math.isnan(row["time_to_target_x_als"])  # no ALS run
    text = improvement(summary)
    assert "best baseline (bpr): +20.0%" in text and "vs IRGAN: +50.0%" in text


def test_run_compare_writes_table_csv_and_plot(tmp_path) -> None:
    data = {"data": "synthetic", "synthetic_size": "tiny"}
    result = run_compare(data, ["bpr", "als"], [0, 1], tmp_path, epochs={"bpr": 4, "als": 4},
                         train_overrides={"eval_every": 2, "threads": 1}, echo=lambda s: None)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert sorted(zip(runs["model"], runs["seed"], strict=True)) == [("als", 0), ("als", 1), ("bpr", 0), ("bpr", 1)]
    assert (runs["best_epoch"] > 0).all() and (runs["train_seconds"] > 0).all()
    table = (tmp_path / "table.md").read_text()
    assert "| bpr |" in table and "| als |" in table and "±" in table and "time to quality" in table
    # with ALS among the models the target is ALS's mean NDCG@50: its better seed reaches it
    als = result.summary.set_index("model").loc["als"]
    assert result.target == pytest.approx(als["NDCG@50_mean"])
    assert als["reached"] >= 1 and "ALS's mean" in table and "× ALS" in table
    assert als["time_to_target_x_als"] == pytest.approx(als["time_to_target_mean"] / als["train_seconds_mean"])
    assert (tmp_path / "ndcg50_vs_time.png").stat().st_size > 1000
    assert (tmp_path / "als-seed1" / "metrics.csv").is_file()
    # a second comparison with one more seed reuses the four finished runs and trains only the new ones
    log: list[str] = []
    again = run_compare(data, ["bpr", "als"], [0, 1, 2], tmp_path, epochs={"bpr": 4, "als": 4},
                        train_overrides={"eval_every": 2, "threads": 1}, echo=log.append)
    assert sum("reusing" in line for line in log) == 4
    assert len(again.runs) == 6
    pd.testing.assert_frame_equal(again.runs[again.runs.seed < 2].drop(columns="time_to_target").reset_index(drop=True),
                                  runs.drop(columns="time_to_target"), check_dtype=False)


def test_cli_compare_and_errors(tmp_path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["compare", "--data", "synthetic", "--models", "bpr,nope", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown model 'nope'" in bad.output
    bad = runner.invoke(main, ["compare", "--data", "synthetic", "--models", "bpr", "--set", "als.factors=3"])
    assert bad.exit_code != 0 and "MODEL.KEY=VALUE" in bad.output
    res = runner.invoke(main, ["compare", "--data", "synthetic", "--synthetic-size", "tiny", "--models", "sa,als",
                               "--seeds", "1", "--epochs", "2", "--eval-every", "1", "--threads", "1",
                               "--set", "als.factors=8", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "| sa |" in res.output and (tmp_path / "c" / "summary.csv").is_file()


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_cli_benchmark_scaling(tmp_path, optimizer: str) -> None:
    res = CliRunner().invoke(main, ["benchmark", "scaling", "--items", "300,600", "--users", "60",
                                    "--density", "0.05", "--threads", "1", "--optimizer", optimizer,
                                    "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "scaling.csv")
    assert df["items"].tolist() == [300, 600] and (df["optimizer"] == optimizer).all()
    for col in ("sdgar_d_epoch_s", "sdgar_g_update_s", "irgan_d_epoch_s", "irgan_g_epoch_s", "d_ratio", "g_ratio"):
        assert (df[col] > 0).all()
    assert (tmp_path / "scaling.png").stat().st_size > 1000


def test_run_compare_continues_an_interrupted_run(tmp_path, monkeypatch) -> None:
    """A run stopped mid-way (Ctrl-C / timeout -s INT) keeps its last epoch's checkpoint; the same comparison again
    continues it (exact resume) instead of starting over, and ends where an uninterrupted run ends."""
    from sdgar.models.bpr import BPR

    data = {"data": "synthetic", "synthetic_size": "tiny"}
    kwargs = {"epochs": {"bpr": 6}, "train_overrides": {"eval_every": 2, "threads": 1}, "echo": lambda s: None}
    whole = run_compare(data, ["bpr"], [0], tmp_path / "whole", **kwargs)
    original, calls = BPR.train_epoch, []

    def stop_at_epoch_4(self, *args, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kw)

    monkeypatch.setattr(BPR, "train_epoch", stop_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        run_compare(data, ["bpr"], [0], tmp_path / "split", **kwargs)
    monkeypatch.setattr(BPR, "train_epoch", original)
    assert not (tmp_path / "split" / "bpr-seed0" / "result.json").exists()
    log: list[str] = []
    split = run_compare(data, ["bpr"], [0], tmp_path / "split", **{**kwargs, "echo": log.append})
    assert any("resuming its last checkpoint" in line for line in log)
    assert not list((tmp_path / "split").glob("bpr-seed0.old-*"))  # continued in place, nothing moved aside
    epochs = pd.read_csv(tmp_path / "split" / "bpr-seed0" / "metrics.csv")["epoch"].tolist()
    assert epochs == [1, 2, 3, 4, 5, 6]
    a, b = whole.runs.iloc[0], split.runs.iloc[0]
    assert a["NDCG@50"] == pytest.approx(b["NDCG@50"], abs=1e-12) and a["Recall@20"] == b["Recall@20"]


def test_same_run_ignores_what_loading_and_resolving_fill_in() -> None:
    a = {"data": {"data": "gowalla", "valid_frac": None}, "train": {"device": "auto", "seed": 0}, "model": {"d": 1}}
    b = {"data": {"data": "gowalla", "valid_frac": 0.0}, "train": {"device": "auto", "seed": 0}, "model": {"d": 1}}
    assert same_run(a, b)  # load_dataset sets valid_frac on the config it was given only
    assert not same_run(a, {**b, "model": {"d": 2}})
    assert not same_run(a, {**b, "data": {"data": "gowalla", "valid_frac": 0.1}})
    cpu = {**b, "train": {"device": "cpu", "seed": 0}}
    assert not same_run(a, cpu) and same_run(a, cpu, ignore_device=True)
