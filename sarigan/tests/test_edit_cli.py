"""CLI: `sarigan edit` (one group, sweep of a layer) and `sarigan fid` / `sarigan ablate` argument handling."""

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image
from test_groups import make_ckpt

from sarigan.cli import main


def test_cli_edit_one_group_and_sweep(tmp_path: Path) -> None:
    ckpt = make_ckpt(tmp_path / "c.pt")
    one = tmp_path / "one.png"
    r = CliRunner().invoke(main, ["edit", "--ckpt", str(ckpt), "--seed", "3", "--rows", "2", "--layer", "1",
                                  "--group", "2", "--scales", "-2,-1,0,1,2", "--out", str(one)])
    assert r.exit_code == 0, r.output
    with Image.open(one) as im:
        assert abs(im.width / im.height - 5 / 2) < 0.2  # 2 rows × 5 scales
    sweep = tmp_path / "sweep.png"
    r = CliRunner().invoke(main, ["edit", "--ckpt", str(ckpt), "--layer", "0", "--scales", "-1,1", "--mode",
                                  "channel", "--out", str(sweep)])
    assert r.exit_code == 0, r.output
    assert "rows = groups" in r.output and sweep.is_file()
    r = CliRunner().invoke(main, ["edit", "--ckpt", str(ckpt), "--layer", "7", "--out", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "layer 7" in r.output and not (tmp_path / "x.png").exists()


def test_cli_edit_rejects_ungrouped_models(tmp_path: Path) -> None:
    ckpt = make_ckpt(tmp_path / "c.pt", grouping="none")
    r = CliRunner().invoke(main, ["edit", "--ckpt", str(ckpt), "--layer", "0", "--group", "0",
                                  "--out", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "not grouped" in r.output


def test_cli_fid_proxy_records_protocol(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SARIGAN_CACHE", str(tmp_path / "cache"))
    # an image folder has no labels: the proxy is the fixed random-init LabelNet (no training in the test)
    ckpt = make_ckpt(tmp_path / "c.pt")
    images = tmp_path / "imgs"
    images.mkdir()
    for k in range(12):
        Image.new("RGB", (10, 10), (20 * k, 100, 200 - 10 * k)).save(images / f"{k}.png")
    out = tmp_path / "fid.json"
    r = CliRunner().invoke(main, ["fid", "--ckpt", str(ckpt), "--data", str(images), "--n", "12", "--out", str(out),
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output
    record = json.loads(out.read_text())
    assert record["fid"] > 0 and "kid" in record and "random-init" in record["protocol"]["trained_on"]
    r = CliRunner().invoke(main, ["fid", "--ckpt", str(ckpt), "--data", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and "nowhere" in r.output


def test_cli_ablate_rejects_unknown_rows(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["ablate", "--kimg", "1", "--rows", "stylegan3", "--run-dir", str(tmp_path / "a"),
                                  "--data", str(tmp_path / "missing")])
    assert r.exit_code != 0
    r = CliRunner().invoke(main, ["ablate", "--kimg", "1", "--preset", "tiny", "--set", "nosuch=1",
                                  "--run-dir", str(tmp_path / "b")])
    assert r.exit_code != 0 and "nosuch" in r.output and not (tmp_path / "b").exists()
