#!/usr/bin/env bash
# One-GPU session (≤ 12 minutes): the SPS table of every algorithm (benchmarks/sps.py on the GPU), then RD² vs
# Rainbow on Gopher and UpNDown for as many frames as fit (4 runs side by side on the one GPU, stopped by SIGTERM,
# which makes `rd2 train` save a checkpoint and its summary), then learning curves. Everything lands in OUT:
#   sps.csv, sps.log, <algo>-<game>/{progress.csv, eval.csv, config.json, checkpoints/}, curves-<game>.png,
#   final_returns.txt
#
#   bash rd2/benchmarks/gpu_runs.sh [OUT]                 # on a CUDA machine (default OUT=runs/gpu)
#   TINY=1 DEVICE=cpu bash rd2/benchmarks/gpu_runs.sh /tmp/gpu-smoke   # seconds, to check the script on a CPU
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python}
mkdir -p "$OUT"
if [[ "${TINY:-0}" == "1" ]]; then
  SPS_ARGS=(--steps 32 --warmup 64 --envs 1,2 --buffer 2000 --algos dqn,rd2)
  RUN_SECONDS=45; TRAIN_SET=(--set learning_starts=100 --set buffer_size=5000); ENVS=2
else
  SPS_ARGS=(--steps 2000 --warmup 1000 --envs 1,8 --buffer 20000 --threads 2)
  RUN_SECONDS=420; TRAIN_SET=(); ENVS=8
fi
echo "== $(date -u +%T) SPS table on $DEVICE" | tee "$OUT/sps.log"
$PY rd2/benchmarks/sps.py --device "$DEVICE" "${SPS_ARGS[@]}" --out "$OUT/sps.csv" 2>&1 | tee -a "$OUT/sps.log"

echo "== $(date -u +%T) RD2 vs Rainbow, ${RUN_SECONDS}s each, 4 runs at once"
pids=()
for game in Gopher UpNDown; do
  for algo in rainbow rd2; do
    timeout --signal=TERM "$RUN_SECONDS" $PY -m rd2.cli train --env "$game" --algo "$algo" --preset cpu \
      --num-envs "$ENVS" --device "$DEVICE" --replay-device device --threads 2 --frames 40000000 \
      --eval-every 0 --ckpt-every 500000 --run-dir "$OUT/$algo-$game" --force --no-progress "${TRAIN_SET[@]}" \
      > "$OUT/$algo-$game.log" 2>&1 &
    pids+=($!)
  done
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || { rc=$?; [[ $rc == 124 ]] || status=$rc; }  # 124: stopped by the time limit (expected)
done
for game in Gopher UpNDown; do
  for algo in rainbow rd2; do tail -n 3 "$OUT/$algo-$game.log"; done
  $PY -m rd2.cli plot "$OUT/rainbow-$game" "$OUT/rd2-$game" --out "$OUT/curves-$game.png" \
    >> "$OUT/final_returns.txt" 2>&1 || echo "no curves for $game (no finished episode yet?)" | tee -a "$OUT/final_returns.txt"
done
echo "== $(date -u +%T) done: $OUT"
exit $status
