"""After `sarigan ablate`: the full-SariGAN row's effect matrix, group heatmaps, and edit grids of the units that
move each factor most (the figures the issue asks to look at).

    python sarigan/benchmarks/inspect_ablation.py runs/sarigan/ablate-demo-16kimg [--row sarigan] [--seeds 6]
    python sarigan/benchmarks/inspect_ablation.py runs/sarigan/shapes-cpu16 --row .      # any shapes run dir

A run without a disentanglement.json gets one computed first (shapes factor predictor, 64 seeds).

Writes into <row>/inspect/: groups/ (JSON + heatmaps), edit_<factor>.png (rows = seeds, columns = group gain
×(1+δ), δ ∈ −1…+1.5, at the factor's top (layer, group)), sweep_layer<L>.png (all groups of that layer, one seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sarigan import load_generator
from sarigan.data import load_shapes, save_grid
from sarigan.edit import edit_grid, sweep_layer
from sarigan.groups import inspect_groups, summary_lines, write_report
from sarigan.metrics.disentanglement import (
    evaluate_disentanglement,
    factor_changes,
    format_matrix,
    real_pair_baseline,
    shapes_factor_predictor,
)
from sarigan.train import z_from_seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--row", default="sarigan")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--units", default="", help="extra (layer:group) units to grid, e.g. 3:3,3:1")
    args = ap.parse_args()
    torch.set_num_threads(1)
    row = args.run_dir / args.row
    dis_path = row / "disentanglement.json"
    if not row.is_dir():
        print(f"SKIP: {row} does not exist; run `sarigan ablate` or `sarigan train --data shapes` first")
        sys.exit(0)
    G = load_generator(row)
    if not dis_path.is_file():
        real = load_shapes(G.cfg.resolution).images
        dis = evaluate_disentanglement(G, shapes_factor_predictor(G.cfg.resolution), real, "model", 64)
        dis["random_units_score"] = evaluate_disentanglement(G, shapes_factor_predictor(G.cfg.resolution), real,
                                                             "random", 64)["score"]
        dis_path.write_text(json.dumps(dis, indent=1))
    dis = json.loads(dis_path.read_text())
    if "random_units_score" not in dis and (row / "result.json").is_file():  # `sarigan ablate` keeps it there
        dis["random_units_score"] = json.loads((row / "result.json").read_text()).get("disent_random_units")
    out = row / "inspect"
    write_report(G, out / "groups")
    print("\n".join(summary_lines(inspect_groups(G))))
    print(format_matrix(dis))
    print(f"score {dis['score']:.3f} (random units {dis.get('random_units_score') or float('nan'):.3f}); "
          f"exclusivity {json.dumps(dis.get('exclusivity'))}; top units: {json.dumps(dis['top_unit'])}")
    w = G.mapping(z_from_seeds(list(range(args.seeds)), G.cfg.z_dim))
    scales = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    up = max(1, 64 // G.cfg.resolution)
    net = shapes_factor_predictor(G.cfg.resolution)
    baseline = real_pair_baseline(net, load_shapes(G.cfg.resolution).images)
    units: dict[tuple[int, int], list[str]] = {}  # (layer, group) → the factors it tops (a unit is gridded once)
    for factor, top in dis["top_unit"].items():
        units.setdefault((top["layer"], top["group"]), []).append(factor)
    for spec in filter(None, args.units.split(",")):
        layer, group = (int(v) for v in spec.split(":"))
        units.setdefault((layer, group), []).append("extra")
    for (layer, group), tops in units.items():
        if G.cfg.grouping == "none":
            break
        with torch.no_grad():
            grid = edit_grid(G, w, layer, group, scales, mode="gain")
        name = f"edit_{'+'.join(tops)}_L{layer}G{group}.png"
        save_grid(grid, out / name, nrow=len(scales), upscale=up)
        # what the factor predictor reads in this very grid: mean change per column against the unedited column
        cols = grid.reshape(args.seeds, len(scales), *grid.shape[1:])
        base = cols[:, scales.index(0.0)]
        print(f"{name}: predicted change vs δ=0 (× real-pair distance), rows = δ")
        print("  δ     " + " ".join(f"{f:>7}" for f in net.heads))
        for k, delta in enumerate(scales):
            change = factor_changes(net, cols[:, k], base, baseline).mean(0)
            print(f"  {delta:+.1f}  " + " ".join(f"{v:7.3f}" for v in change.tolist()))
    layers = sorted({t["layer"] for t in dis["top_unit"].values()})
    for layer in layers if G.cfg.grouping != "none" else []:
        with torch.no_grad():
            grid, groups = sweep_layer(G, w[:1], layer, scales, mode="gain")
        save_grid(grid, out / f"sweep_layer{layer}.png", nrow=len(scales), upscale=up)
        print(f"sweep_layer{layer}.png rows = groups {groups}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
