"""Seconds per training iteration and peak memory: SariGAN (learned grouping) vs the same model with
grouping=none (the StyleGAN2 path), measured in one run. Target: SariGAN ≤ 1.3× StyleGAN2.

Timings are interleaved (blocks of iterations alternate between the models), so that a shared, noisy CPU slows
both alike. Peak memory: CUDA max_memory_allocated, or on CPU the peak RSS of a fresh subprocess per model
during training steps (and how far it rose above the RSS after set-up).

    .venv/bin/python sarigan/benchmarks/bench_speed.py --preset cpu16 --iters 40
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from neurips20_common import select_device

from sarigan.config import get_preset
from sarigan.data import load_shapes
from sarigan.train import Trainer

GROUPINGS = ("learned", "uniform", "none")


def _trainer(preset: str, grouping: str, device: torch.device, batch: int | None) -> Trainer:
    cfg = get_preset(preset).replace(grouping=grouping, fd_every=0)
    if batch:
        cfg = cfg.replace(batch=batch)
    return Trainer(cfg, load_shapes(cfg.resolution, n=2048), device, seed=0)


def _status_mib(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_memory_worker(args: argparse.Namespace) -> None:
    device = select_device(args.device)
    torch.set_num_threads(args.threads)
    tr = _trainer(args.preset, args.worker, device, args.batch)
    tr.train_step()
    before = _status_mib("VmRSS")
    try:  # reset the high-water mark, so the peak below is the training steps' own (Linux ≥ 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    for _ in range(tr.cfg.d_reg_every + 1):  # covers the R1 and path-length steps
        tr.train_step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        print(json.dumps({"peak_mib": peak, "train_mib": peak}))
    else:
        peak = _status_mib("VmHWM")
        print(json.dumps({"peak_mib": peak, "train_mib": peak - before}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu16")
    ap.add_argument("--iters", type=int, default=32, help="timed iterations per model")
    ap.add_argument("--block", type=int, default=4, help="iterations per interleaved block")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--with-uniform", action="store_true", help="also time grouping=uniform")
    ap.add_argument("--worker", choices=GROUPINGS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _peak_memory_worker(args)

    device = select_device(args.device)
    torch.set_num_threads(args.threads)
    names = ["learned", "none"] + (["uniform"] if args.with_uniform else [])
    trainers = {g: _trainer(args.preset, g, device, args.batch) for g in names}
    for tr in trainers.values():  # warm-up, including one R1 + path-length iteration
        tr.train_step()
        tr.train_step()
    times = {g: 0.0 for g in names}
    done = 0
    while done < args.iters:
        for g, tr in trainers.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            for _ in range(args.block):
                tr.train_step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[g] += time.perf_counter() - t
        done += args.block
    cfg = trainers["learned"].cfg
    print(f"preset {args.preset}: {cfg.resolution}², channels ≤ {cfg.channel_max}, G = {cfg.groups}, "
          f"batch {cfg.batch}, device {device}, {torch.get_num_threads()} thread(s), "
          f"{done} iterations per model (interleaved), torch {torch.__version__}")
    peaks = {}
    for g in names:
        cmd = [sys.executable, __file__, "--worker", g, "--preset", args.preset, "--device", str(device),
               "--threads", str(args.threads)] + (["--batch", str(args.batch)] if args.batch else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        peaks[g] = json.loads(out)
    base = times["none"] / done
    for g in names:
        sec = times[g] / done
        mem = peaks[g]
        print(f"  grouping={g:8s} {sec:.4f} s/it  ({sec / base:.2f}× StyleGAN2 path)  peak memory "
              f"{mem['peak_mib']:.0f} MiB (+{mem['train_mib']:.0f} MiB while training)")
    ratio = times["learned"] / times["none"]
    print(f"SariGAN / StyleGAN2 = {ratio:.2f}× (target ≤ 1.3×): {'OK' if ratio <= 1.3 else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
