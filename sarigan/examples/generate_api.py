"""Notebook-style tour of the Python API (issue 16), run by CI on a tiny model (a few seconds on one CPU core).

    python sarigan/examples/generate_api.py [--run-dir DIR] [--kimg 0.16]

Trains a `tiny` SariGAN on procedural shapes, loads its generator three ways (run dir, checkpoint file,
weights-only export) and checks what a user relies on: images are uint8 [N, H, W, 3], the same per seed whatever
else is in the batch, different for different seeds, and identical from all three loading paths.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import sarigan


def main(run_dir: Path, kimg: float) -> dict[str, object]:
    # 1. train: the same function `sarigan train` calls (run dir, checkpoints, metrics.csv, summary.json)
    path, _ = sarigan.train("shapes", preset="tiny", run_dir=run_dir, overrides={"kimg": kimg}, device="cpu",
                            threads=1, log=lambda m: None)

    # 2. load the EMA generator from the run dir (its newest checkpoint)
    G = sarigan.load_generator(path)
    print(f"G.z_dim = {G.z_dim}, resolution = {G.resolution}, trained for {G.meta['step']} iterations")

    # 3. sample: uint8 [N, H, W, 3]; image i depends only on seed i
    images = G.generate(seeds=range(8), psi=0.7)
    print(f"G.generate(seeds=range(8), psi=0.7) -> {images.dtype} {images.shape}")
    assert images.dtype == np.uint8 and images.shape == (8, G.resolution, G.resolution, 3)
    assert np.array_equal(G.generate(seeds=range(8), psi=0.7), images), "the same call gave other images"
    # another batch composition: the same images, up to one grey level of float rounding across batch shapes
    again = G.generate(seeds=[5, 3], psi=0.7).astype(int)
    assert np.abs(again - images[[5, 3]]).max() <= 1, "not deterministic per seed"
    differ = sum(not np.array_equal(images[i], images[j]) for i in range(8) for j in range(i + 1, 8))
    assert differ == 28, f"only {differ} of 28 seed pairs give different images"
    untruncated = G.generate(seeds=range(8))
    assert not np.array_equal(untruncated, images), "psi had no effect"
    diff = np.abs(again - images[[5, 3]]).max()
    print(f"seeds [5, 3] equal seeds 5 and 3 of the batch (max diff {diff}); all 28 seed pairs differ; "
          f"mean |ψ=1 − ψ=0.7| = {np.abs(untruncated.astype(int) - images).mean():.2f} grey levels")

    # 4. the checkpoint file and a weights-only export give the same images
    G_file = sarigan.load_generator(G.meta["checkpoint"])
    weights, side = G.save_weights(Path(path) / "export" / "generator.safetensors")
    G_export = sarigan.load_generator(weights)
    for other in (G_file, G_export):
        assert np.array_equal(other.generate(seeds=range(8), psi=0.7), images)
    print(f"checkpoint {Path(G.meta['checkpoint']).name} and export {weights.name} "
          f"({weights.stat().st_size / 1e3:.0f} kB + {side.name}) reproduce the same 8 images")
    return {"shape": images.shape, "z_dim": G.z_dim, "export": str(weights)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--kimg", type=float, default=0.16)
    args = parser.parse_args()
    if args.run_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "run", args.kimg)
    else:
        main(args.run_dir, args.kimg)
