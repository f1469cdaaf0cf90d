"""Ablation rows of SariGAN (spec §3 "Ablations", §7 item 10), trained with the same seed and budget.

Rows: StyleGAN2 (grouping=none), uniform DBT-like grouping, learned grouping without the MI loss, full SariGAN.
Each row is trained with :class:`sarigan.train.Trainer` from the same preset, seed and kimg, then scored with
FID and KID on the fast proxy extractor (the LabelNet trained on the data's labels; trend-grade, not comparable
with published FIDs) and, on data with known factors (shapes), the disentanglement score of
:mod:`sarigan.metrics.disentanglement`. Finished rows are kept in ``<run_dir>/<row>/result.json``, so a rerun
continues where an interrupted one stopped.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from neurips20_common import RunDir, UserError, seed_everything

from sarigan.config import get_preset
from sarigan.data import ImageData, load_data
from sarigan.metrics.disentanglement import evaluate_disentanglement, format_matrix
from sarigan.metrics.features import LABEL_NET_STEPS, ProxyExtractor, label_net_accuracy
from sarigan.metrics.fid import evaluate_fid

ROWS: dict[str, dict[str, Any]] = {
    "stylegan2": {"grouping": "none", "mi_weight": 0.0},  # plain StyleGAN2: no groups, no Q-head loss
    "uniform": {"grouping": "uniform"},
    "learned_no_mi": {"grouping": "learned", "mi_weight": 0.0},
    "sarigan": {"grouping": "learned"},
}
COLUMNS = ("row", "grouping", "mi_weight", "kimg", "iterations", "train_s", "fid_proxy", "kid_proxy", "kid_std",
           "n_eval", "disentanglement", "disent_random_units")


def run_ablation(data_spec: str, preset: str, kimg: float, run_dir: Path, seed: int = 0,
                 device: torch.device | str = "cpu", rows: Sequence[str] = tuple(ROWS), n_eval: int = 1000,
                 n_seeds: int = 64, cache_dir: Path | None = None, label_steps: int = LABEL_NET_STEPS,
                 data: ImageData | None = None, overrides: dict[str, Any] | None = None,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train and score each row; write ablation.csv, ablation.md and the per-row effect matrices.

    ``data`` overrides loading ``data_spec`` (tests pass a small sample); ``label_steps`` trains the proxy LabelNet;
    ``overrides`` changes config fields of every row (the row's own settings win).
    """
    from sarigan.train import Trainer  # the core trainer (issue 6)

    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise UserError(f"unknown ablation rows {unknown}; choose from {', '.join(ROWS)}")
    base = get_preset(preset)
    data = data if data is not None else load_data(data_spec, base.resolution, seed=seed)
    extractor = ProxyExtractor.for_data(data.images, data.labels, data.name, steps=label_steps, cache_dir=cache_dir,
                                        device=device)
    factors = data.name == "shapes"
    run_dir.mkdir(parents=True, exist_ok=True)
    if factors:  # how well the factor predictor reads real shapes it never saw (held-out sample, seed 99)
        from sarigan.data import load_shapes

        held_out = load_shapes(base.resolution, n=2000, seed=99)
        quality = label_net_accuracy(extractor.net, held_out.images, held_out.labels)
        (run_dir / "factor_predictor.json").write_text(json.dumps(quality, indent=1))
        log("factor predictor on held-out real shapes: " + ", ".join(f"{k} {v:.3f}" for k, v in quality.items()))
    results = []
    for name in rows:
        out = run_dir / name / "result.json"
        setup = {"data": data_spec, "preset": preset, "kimg": kimg, "seed": seed, "overrides": overrides or {}}
        if out.is_file():
            done = json.loads(out.read_text())
            clash = [f"{k}: {done[k]!r} there, {v!r} now" for k, v in setup.items() if k in done and done[k] != v]
            if clash:  # never mix a row trained under other settings into this table
                raise UserError(f"{out} was trained with other settings ({'; '.join(clash)}); "
                                "use another --run-dir or delete that row")
            results.append(done)
            log(f"[{name}] already done: {out}")
            continue
        # every row gets exactly ``kimg`` (a preset's wall-clock cap would give the rows unequal budgets)
        cfg = base.replace(kimg=kimg, max_minutes=0.0, **{**(overrides or {}), **ROWS[name]})
        run = RunDir(run_dir / name)
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config({"config": cfg, "data": data_spec, "seed": seed, "preset": preset, "row": name})
        log(f"[{name}] training {cfg.grouping} grouping, mi_weight {cfg.mi_weight}, {kimg} kimg on {data.name}")
        t0 = time.perf_counter()
        trainer = Trainer(cfg, data, device, seed)
        trainer.fit(kimg, run, extra={"data": data_spec}, log=lambda m, n=name: log(f"[{n}] {m}"))
        train_s = time.perf_counter() - t0
        G = trainer.G_ema.eval()
        seed_everything(seed)
        score = evaluate_fid(G, data.images, data.name, extractor, n=n_eval, seed=seed, with_kid=True,
                             cache_dir=cache_dir, device=device)
        row: dict[str, Any] = {**setup, "row": name, "grouping": cfg.grouping, "mi_weight": cfg.mi_weight,
                               "iterations": trainer.step, "train_s": round(train_s, 1),
                               "fid_proxy": score["fid"], "kid_proxy": score["kid"], "kid_std": score["kid_std"],
                               "n_eval": n_eval, "protocol": score["protocol"]}
        if factors:
            dis = evaluate_disentanglement(G, extractor.net, data.images, "model", n_seeds, seed=seed)
            row["disentanglement"] = dis["score"]
            (run.path / "disentanglement.json").write_text(json.dumps(dis, indent=1))
            (run.path / "effect_matrix.md").write_text(format_matrix(dis) + "\n")
            if cfg.grouping != "none":  # control: random channel subsets of the same sizes in the same model
                row["disent_random_units"] = evaluate_disentanglement(G, extractor.net, data.images, "random",
                                                                      n_seeds, seed=seed)["score"]
        out.write_text(json.dumps(row, indent=1))
        log(f"[{name}] FID(proxy) {row['fid_proxy']:.3f} KID {row['kid_proxy']:.4f} "
            f"disentanglement {row.get('disentanglement', float('nan')):.3f}")
        results.append(row)
    write_tables(results, run_dir, data_spec, preset, kimg, seed)
    return results


def write_tables(results: list[dict[str, Any]], run_dir: Path, data_spec: str, preset: str, kimg: float,
                 seed: int) -> tuple[Path, Path]:
    csv_path, md_path = run_dir / "ablation.csv", run_dir / "ablation.md"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow({k: r.get(k, "") for k in COLUMNS})
    lines = [f"Ablation on {data_spec}, preset {preset}, {kimg} kimg per row, seed {seed}. FID/KID on the in-package "
             "proxy extractor (trend-grade). Disentanglement = mean over factors of the normalized gap between the "
             "two (layer, group) units that move the factor most (1 = one group controls it); 'random units' = "
             "the same model edited through random channel subsets of the same sizes.", "",
             "| row | grouping | MI weight | iterations | train s | FID (proxy) | KID (proxy) ×10³ | disentanglement |"
             " disent. (random units) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        dis = f"{r['disentanglement']:.3f}" if "disentanglement" in r else "—"
        rnd = f"{r['disent_random_units']:.3f}" if "disent_random_units" in r else "—"
        lines.append(f"| {r['row']} | {r['grouping']} | {r['mi_weight']:g} | {r['iterations']} | {r['train_s']:.0f} | "
                     f"{r['fid_proxy']:.3f} | {1e3 * r['kid_proxy']:.2f} ± {1e3 * r['kid_std']:.2f} | {dis} | {rnd} |")
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path
