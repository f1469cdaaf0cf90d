"""`sarigan ablate` trains the rows through the core trainer and writes the tables; finished rows are reused."""

import csv
from pathlib import Path

import pytest
from neurips20_common import UserError

from sarigan.ablate import ROWS, run_ablation
from sarigan.data import load_shapes


def test_ablation_rows_and_tables(tmp_path: Path) -> None:
    data = load_shapes(8, n=256, seed=0)
    kwargs = dict(data=data, label_steps=5, n_eval=32, n_seeds=2, cache_dir=tmp_path / "cache",
                  overrides={"fd_every": 0}, log=lambda m: None)
    rows = run_ablation("shapes", "tiny", 0.016, tmp_path / "abl", rows=["stylegan2", "sarigan"], **kwargs)
    assert [r["row"] for r in rows] == ["stylegan2", "sarigan"]
    assert rows[0]["grouping"] == "none" and rows[0]["mi_weight"] == 0 and rows[1]["grouping"] == "learned"
    assert all(r["iterations"] == 2 and r["fid_proxy"] > 0 and 0 <= r["disentanglement"] <= 1 for r in rows)
    assert "disent_random_units" in rows[1] and "disent_random_units" not in rows[0]
    with open(tmp_path / "abl" / "ablation.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["row"] for t in table] == ["stylegan2", "sarigan"]
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| sarigan | learned |" in md and "0.016 kimg" in md
    assert (tmp_path / "abl" / "sarigan" / "effect_matrix.md").is_file()
    # a rerun reuses the finished rows instead of training again
    again = run_ablation("shapes", "tiny", 0.016, tmp_path / "abl", rows=["stylegan2", "sarigan"], **kwargs)
    assert again == rows
    # ... but never rows trained under other settings (here another seed) into the same table
    with pytest.raises(UserError, match="seed: 0 there, 1 now"):
        run_ablation("shapes", "tiny", 0.016, tmp_path / "abl", seed=1, rows=["stylegan2"], **kwargs)
    assert set(ROWS) == {"stylegan2", "uniform", "learned_no_mi", "sarigan"}
