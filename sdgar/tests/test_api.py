"""The Python API (issue 16): fit / recommend / similar_items / save / load / export, and the quickstart example."""

import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from neurips20_common import UserError

import sdgar
from sdgar import ALS, BPR, SDGAR
from sdgar.cli import main

FAST = {"factors": 8, "iterations": 2, "num_threads": 1, "device": "cpu", "batch_size": 64}
SDGAR_FAST = {**FAST, "gen_emb_dim": 4, "gen_sample_num_item": 8, "gen_sample_num_user": 8}


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 30)) < 0.2).astype(np.float32)
    dense[:, 0] = 1  # everybody likes item 0
    return sp.csr_matrix(dense)


@pytest.fixture(scope="module")
def fitted(matrix: sp.csr_matrix) -> SDGAR:
    return SDGAR(**SDGAR_FAST).fit(matrix, show_progress=False)


def test_exports_and_parameters() -> None:
    assert {"SDGAR", "BPR", "ALS", "WARP", "DNS", "load"} <= set(dir(sdgar))
    model = SDGAR(factors=64, negatives=7, regularization=0.05, iterations=3)
    assert (model.config.model.dis_emb_dim, model.config.model.dis_sample_num) == (64, 7)
    assert model.config.model.dis_lambda == 0.05 and model.config.train.epochs == 3
    assert BPR(factors=12, negatives=2).config.model.neg_samples == 2
    assert ALS(factors=5).config.model.factors == 5
    with pytest.raises(UserError, match="unknown parameter 'nope'"):
        SDGAR(nope=1)
    with pytest.raises(UserError, match="must be a positive"):
        SDGAR(factors=0)
    with pytest.raises(UserError, match="must be a positive"):
        BPR(iterations=-1)
    with pytest.raises(UserError, match="finite"):
        BPR(regularization=float("nan"))
    with pytest.raises(UserError, match="not fitted"):
        SDGAR().recommend(0)


def test_recommend_filters_and_shapes(fitted: SDGAR, matrix: sp.csr_matrix) -> None:
    ids, scores = fitted.recommend(3, matrix[3], N=5)
    assert ids.shape == (5,) and not set(ids) & set(matrix[3].indices) and (np.diff(scores) <= 0).all()
    ids, _ = fitted.recommend(3, matrix[3], N=5, filter_already_liked_items=False)
    assert len(ids) == 5
    ids, _ = fitted.recommend(3, N=100)  # fewer candidates than N: only the unfiltered ones come back
    assert len(ids) == 30 - matrix[3].nnz
    ids, _ = fitted.recommend(3, matrix[3], N=3, items=[1, 2, 3, 4, 5, 6], filter_items=[2])
    assert set(ids) <= {1, 3, 4, 5, 6} - set(matrix[3].indices)
    many, _ = fitted.recommend(np.arange(4), matrix[:4], N=4)
    assert many.shape == (4, 4) and (many[3] == fitted.recommend(3, matrix[3], N=4)[0]).all()
    with pytest.raises(UserError, match="user 99 is not in the fitted data"):
        fitted.recommend(99)
    with pytest.raises(UserError, match="shape"):
        fitted.recommend(3, matrix[:2])
    with pytest.raises(UserError, match="N must be"):
        fitted.recommend(3, N=0)
    sim, sim_scores = fitted.similar_items(4, N=3)
    assert sim[0] == 4 and sim.shape == (3,) and sim_scores[0] == pytest.approx(1.0, abs=1e-5)
    assert fitted.similar_items([4, 5], N=2)[0].shape == (2, 2)


def test_dataframe_keeps_original_ids(matrix: sp.csr_matrix, tmp_path: Path) -> None:
    coo = matrix.tocoo()
    df = pd.DataFrame({"u": [f"user-{r}" for r in coo.row], "i": coo.col * 1000 + 7})
    model = BPR(**FAST).fit(df, show_progress=False, user_col="u", item_col="i", run_dir=tmp_path / "run")
    ids, _ = model.recommend("user-3", N=4)
    assert ids.dtype.kind in "iu" and all(i % 1000 == 7 for i in ids)
    assert not set(ids) & set(df.loc[df.u == "user-3", "i"])
    assert (tmp_path / "run" / "summary.json").is_file() and (tmp_path / "run" / "dataset.npz").is_file()
    with pytest.raises(UserError, match="no column 'user'"):
        BPR(**FAST).fit(df, show_progress=False)
    with pytest.raises(UserError, match=r"scipy\.sparse"):
        BPR(**FAST).fit(np.ones((3, 3)), show_progress=False)


def test_valid_frac_keeps_the_best_checkpoint(matrix: sp.csr_matrix, tmp_path: Path) -> None:
    model = BPR(**{**FAST, "iterations": 3}, valid_frac=0.2, eval_every=1)
    model.fit(matrix, show_progress=False, run_dir=tmp_path / "r")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["selected_on"] == "valid" and model.summary["best_epoch"] == summary["best_epoch"]
    assert "valid_NDCG@50" in summary["best"]


def test_save_load_export_and_cli(fitted: SDGAR, matrix: sp.csr_matrix, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "m.pt")
    assert path.stat().st_mode & 0o777 == 0o644
    loaded = sdgar.load(path)
    assert type(loaded) is SDGAR
    for a, b in zip(loaded.recommend(np.arange(5), matrix[:5], N=5), fitted.recommend(np.arange(5), matrix[:5], N=5),
                    strict=True):
        assert np.array_equal(a, b)
    result = CliRunner().invoke(main, ["recommend", "--ckpt", str(path), "--user", "2", "--k", "3"])
    assert result.exit_code == 0, result.output
    assert [int(line.split()[1]) for line in result.output.splitlines()[2:]] == list(fitted.recommend(2, N=3)[0])
    weights, info = fitted.export(tmp_path / "shared")
    from safetensors.numpy import load_file

    tensors = load_file(weights)
    assert np.array_equal(tensors["item_factors"], fitted.item_factors)
    meta = json.loads(info.read_text())
    assert meta["model"] == "sdgar" and meta["n_items"] == 30 and meta["versions"]["sdgar"] == sdgar.__version__
    assert weights.stat().st_mode & 0o777 == 0o644 and info.stat().st_mode & 0o777 == 0o644


def test_load_a_cli_run_after_its_data_moved(tmp_path: Path) -> None:
    data = tmp_path / "log.csv"
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(25, 6, replace=False)]
    data.write_text("who,what\n" + "".join(f"{u},{i}\n" for u, i in rows))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(data), "--format", "csv", "--user-col", "who",
                                       "--item-col", "what", "--model", "bpr", "--epochs", "2", "--device", "cpu",
                                       "--threads", "1", "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "format csv (--format)" in result.output and "valid" in result.output
    data.unlink()  # the CSV is gone: the run dir carries the id maps and the interactions
    model = sdgar.load(run_dir)
    ids, _ = model.recommend("u3", N=3)
    assert all(str(i).startswith("i") for i in ids)
    assert json.loads((run_dir / "summary.json").read_text())["selected_on"] == "valid"  # own data: valid split
    result = CliRunner().invoke(main, ["evaluate", "--ckpt", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert "NDCG@50" in result.output


def test_quickstart_example_runs() -> None:
    runpy.run_path(str(Path(__file__).parents[1] / "examples" / "quickstart.py"), run_name="__main__")


@pytest.mark.parametrize("name", ["ALS", "WARP", "DNS", "SA", "AOBPR", "CML", "IRGAN"])
def test_every_model_fits_saves_and_loads(name: str, matrix: sp.csr_matrix, tmp_path: Path) -> None:
    model = getattr(sdgar, name)(factors=8, iterations=2, num_threads=1, device="cpu").fit(matrix, show_progress=False)
    ids, scores = model.recommend(1, matrix[1], N=3)
    assert len(ids) == 3 and np.isfinite(scores).all() and not set(ids) & set(matrix[1].indices)
    loaded = sdgar.load(model.save(tmp_path / "m.pt"))
    assert type(loaded) is type(model) and np.array_equal(loaded.recommend(1, matrix[1], N=3)[0], ids)
