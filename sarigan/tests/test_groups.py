"""`sarigan groups`: per-layer assignment, sizes, τ, affinity statistics; JSON and PNG heatmaps."""

import dataclasses
import json
from pathlib import Path

import torch
from click.testing import CliRunner
from neurips20_common import save_checkpoint

from sarigan.cli import main
from sarigan.config import get_preset
from sarigan.groups import inspect_groups, write_report
from sarigan.networks import Generator


def make_ckpt(path: Path, grouping: str = "learned") -> Path:
    torch.manual_seed(0)
    cfg = get_preset("tiny").replace(grouping=grouping)
    G = Generator(cfg)
    return save_checkpoint(path, {"config": dataclasses.asdict(cfg), "G": G.state_dict(), "G_ema": G.state_dict(),
                                  "data": "shapes"})


def test_inspection_matches_the_model() -> None:
    torch.manual_seed(0)
    G = Generator(get_preset("tiny"))
    infos = inspect_groups(G)
    assert len(infos) == len(G.styled_layers())
    for info, layer in zip(infos, G.styled_layers(), strict=True):
        assert info["grouped"] and info["mode"] == "learned"
        assert info["assignment"] == layer.group_index().tolist()
        assert sum(info["sizes"]) == info["channels"] == layer.conv.weight.shape[1]
        assert abs(info["tau"] - float(torch.sigmoid(torch.tensor(-1.0)))) < 1e-6  # θ_τ init −1
        c, g = info["channels"], info["groups"]
        assert info["affinity"]["target_sum"] == c * c / g
        with torch.no_grad():
            _, l_sim, l_bal = layer.grouping(G.conv1.conv.kernel_similarity() if info["layer"] == 0 else
                                             G.styled_layers()[info["layer"] - 1].conv.kernel_similarity())
        assert abs(info["loss_sim"] - float(l_sim)) < 1e-4 and abs(info["loss_bal"] - float(l_bal)) < 1e-2


def test_uniform_and_none_groupings() -> None:
    torch.manual_seed(0)
    uni = inspect_groups(Generator(get_preset("tiny").replace(grouping="uniform")))
    assert all(len(set(i["sizes"])) == 1 and "tau" not in i for i in uni)  # equal sizes, no learned threshold
    none = inspect_groups(Generator(get_preset("tiny").replace(grouping="none")))
    assert not any(i["grouped"] for i in none)


def test_report_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    G = Generator(get_preset("tiny"))
    path, pngs = write_report(G, tmp_path)
    data = json.loads(path.read_text())
    assert data["grouping"] == "learned" and len(data["layers"]) == len(pngs) == len(G.styled_layers())
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_cli_groups(tmp_path: Path) -> None:
    ckpt = make_ckpt(tmp_path / "run" / "checkpoints" / "ckpt-000000001.pt")
    result = CliRunner().invoke(main, ["groups", "--ckpt", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "groups" / "groups.json").is_file()
    assert "τ" in result.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["groups", "--ckpt", str(bad)])
    assert result.exit_code != 0 and "bad.pt" in result.output
    assert ckpt.is_file()
