"""Inpainting table (issue 20): SariGAN-conditional vs StyleGAN2-conditional vs masked W+ projection.

Every method completes the same held-out images under the same masks (sarigan.inpaint.evaluation_set); scores:
hole L1, PSNR (whole image and hole), FID/KID of the completions against the truths on the proxy extractor (all n)
and, with --inception-n, on Inception-v3 for the first m images. Runs are found as <root>/<method>-s<seed>:
``sarigan`` and ``stylegan2`` are `sarigan inpaint train` runs, ``uncond`` an unconditional `sarigan train` run that
the projection baseline inverts.

    python sarigan/benchmarks/inpaint_table.py --root runs/inpaint --seeds 0,1,2 --n 1000 --inception-n 256
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from sarigan.data import load_data, to_uint8
from sarigan.inpaint import InpaintConfig, Inpainter, completion_grid, evaluation_set
from sarigan.metrics.features import FeatureExtractor, make_extractor
from sarigan.metrics.inpaint import completion_scores, mean_std
from sarigan.project import ProjectConfig

METHODS = {"sarigan": "SariGAN-conditional", "stylegan2": "StyleGAN2-conditional (grouping none)",
           "uncond": "projection into W+ of an unconditional SariGAN",
           "meanfill": "reference: hole = mean colour of the visible pixels (no model)",
           "sarigan_rec": "SariGAN-conditional + hole L1 (rec_weight 1)",
           "stylegan2_rec": "StyleGAN2-conditional + hole L1 (rec_weight 1)"}


class CachedExtractor(FeatureExtractor):
    """Remembers the features of image sets it has seen (the truths are scored against every method)."""

    def __init__(self, inner: FeatureExtractor) -> None:
        super().__init__(inner.device, inner.batch)
        self.inner, self.cache = inner, {}
        self.name, self.dims = inner.name, inner.dims

    def protocol(self) -> dict:
        return self.inner.protocol()

    def extract(self, images: torch.Tensor) -> np.ndarray:
        key = hashlib.sha1(images.numpy().tobytes()).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.inner.extract(images)
        return self.cache[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="runs/inpaint")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="sarigan,stylegan2,uncond")
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--inception-n", type=int, default=0, help="Also Inception FID/KID on the first m (0 = off).")
    ap.add_argument("--steps", type=int, default=200, help="Projection steps.")
    ap.add_argument("--resolution", type=int, default=16, help="Resolution of the meanfill reference.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--redo", action="store_true", help="Score again runs that have a JSON in --out.")
    ap.add_argument("--out", default=None, help="Folder for JSON, grids and table.md (default <root>/table).")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.root)
    out = Path(args.out) if args.out else root / "table"
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    icfg = InpaintConfig()
    records: dict[str, list[dict]] = {}
    proxy = inception = None
    for method in args.methods.split(","):
        for seed in seeds:
            run = root / f"{method}-s{seed}"
            done_json = out / f"{method}-s{seed}.json"
            if done_json.is_file() and not args.redo:  # scored before (same protocol): reuse
                rec = json.loads(done_json.read_text())
                if rec["n"] == args.n and (not args.inception_n or "inception" in rec):
                    records.setdefault(method, []).append(rec)
                    continue
            if method != "meanfill" and not run.is_dir():
                print(f"skip {run}: missing", flush=True)
                continue
            project_cfg = ProjectConfig(steps=args.steps)
            inp = None if method == "meanfill" else Inpainter.load(run, "cpu", project_cfg=project_cfg)
            res = args.resolution if inp is None else inp.G.cfg.resolution
            if proxy is None:
                ref = load_data(args.data, res)
                proxy = CachedExtractor(make_extractor("proxy", ref.images, ref.labels, ref.name))
                truths, masks = evaluation_set(args.data, res, icfg, args.n)
            t0 = time.perf_counter()
            x = truths.float() / 127.5 - 1
            if inp is None:  # the per-image, per-channel mean of the visible pixels fills the hole
                vis = 1 - masks
                fill = (x * vis).sum((2, 3), keepdim=True) / vis.sum((2, 3), keepdim=True).clamp_min(1)
                done = to_uint8(x * vis + fill * masks)
            else:
                done = to_uint8(inp.complete(x, masks, seed=0))
            t_complete = time.perf_counter() - t0
            rec = {"method": method if inp is None else inp.method, "run": str(run), "seed": seed,
                   "complete_seconds": t_complete,
                   **completion_scores(done, truths, masks, proxy)}
            if args.inception_n:
                if inception is None:
                    inception = CachedExtractor(make_extractor("inception", truths, {}, args.data))
                m = args.inception_n
                inc = completion_scores(done[:m], truths[:m], masks[:m], inception)
                rec["inception"] = {k: inc[k] for k in ("n", "fid", "kid", "kid_std", "protocol")}
            completion_grid(truths.float() / 127.5 - 1, masks, done.float() / 127.5 - 1,
                            out / f"{method}-s{seed}.png", rows=8)
            (out / f"{method}-s{seed}.json").write_text(json.dumps(rec, indent=1))
            records.setdefault(method, []).append(rec)
            line = (f"{method} s{seed}: L1 {rec['l1_hole']:.4f} PSNR {rec['psnr']:.2f} hole {rec['psnr_hole']:.2f} "
                    f"FID(proxy) {rec['fid']:.2f} KID {rec['kid']:.4f}")
            if "inception" in rec:
                line += f" FID(inc, n={rec['inception']['n']}) {rec['inception']['fid']:.2f}"
            print(f"{line} ({t_complete:.0f} s)", flush=True)
    rows = ["| method | seeds | hole L1 ↓ | PSNR dB ↑ | hole PSNR dB ↑ | FID proxy ↓ | KID proxy ×10³ ↓ |"
            + (" FID Inception ↓ | KID Inception ×10³ ↓ |" if args.inception_n else ""),
            "|---|---|---|---|---|---|---|" + ("---|---|" if args.inception_n else "")]
    for method, recs in records.items():
        def ms(key: str, scale: float = 1.0, sub: str | None = None, fmt: str = ".3f", rs: list = recs) -> str:
            vals = [(r[sub][key] if sub else r[key]) * scale for r in rs if (sub is None or sub in r)]
            mean, std = mean_std(vals)
            return f"{mean:{fmt}} ± {std:{fmt}}"
        row = (f"| {METHODS[method]} | {len(recs)} | {ms('l1_hole', fmt='.4f')} | {ms('psnr', fmt='.2f')} | "
               f"{ms('psnr_hole', fmt='.2f')} | {ms('fid', fmt='.2f')} | {ms('kid', 1e3, fmt='.1f')} |")
        if args.inception_n:
            row += f" {ms('fid', sub='inception', fmt='.1f')} | {ms('kid', 1e3, sub='inception', fmt='.1f')} |"
        rows.append(row)
    table = "\n".join(rows)
    (out / "table.md").write_text(table + "\n")
    fields = ["method", "seed", "n", "l1_hole", "psnr", "psnr_hole", "fid", "kid", "inception_n", "inception_fid",
              "inception_kid", "complete_seconds"]
    with (out / "results.csv").open("w", newline="") as fh:  # one row per run; fid/kid = proxy extractor
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for method, recs in records.items():
            for r in recs:
                inc = {f"inception_{k}": r["inception"][k] for k in ("n", "fid", "kid")} if "inception" in r else {}
                writer.writerow({**r, "method": method, **inc})
    print(table)


if __name__ == "__main__":
    main()
