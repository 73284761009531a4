#!/usr/bin/env bash
# The GPU check of the CUDA backend, for one run on a machine with an NVIDIA GPU, from the repo
# root: prints the GPU (nvidia-smi), builds the kernels (a no-op when a carried native/cuda/build
# matches the sources and this nvcc), runs every test/cuda/*.test.ts with Node's test runner (each
# file on its own, so one failing file does not hide the others; every launch synchronised, so an
# error names its kernel), times the kernels once (test/cuda/kernel-times.ts: first numbers, not
# the peer benchmark), and prints a summary table last. Logs go to $OUT (if set) as gpu-check.log,
# summary.txt and kernel-times.json. Exit status: 0 when no test failed.
# Needs: node >= 20 and the runtime modules (tsx, koffi), either installed (npm ci) or carried in
# .device/ as scripts/device-pack.sh packs them (scripts/device-node.sh sets them up).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/gpu-check.log
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }
T0=$(date +%s)

source scripts/device-node.sh
TESTS=(test/cuda/*.test.ts); TIMER=test/cuda/kernel-times.ts

say "== GPU"
{ nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv; } 2>&1 | tee -a "$LOG"
say "node $(node --version), $(nproc) cores"
GPU_PRESENT=0
nvidia-smi -L >/dev/null 2>&1 && GPU_PRESENT=1

say "== kernels"
if ! scripts/build-cuda.sh 2>&1 | tee -a "$LOG"; then
  if [ -f native/cuda/build/STAMP ]; then say "gpu-check: build failed; testing the carried native/cuda/build"; else say "gpu-check: no kernels"; fi
fi
BUILD_S=$(( $(date +%s) - T0 ))

say "== tests"
export XTUNER_CUDA_SYNC=1
ROWS=()
FAILED=0
for f in "${TESTS[@]}"; do
  name=$(basename "$f"); name=${name%%.test.*}
  t=$(date +%s)
  tap=$(timeout 150 "${RUN[@]}" --test --test-reporter=tap "$f" 2>&1)
  rc=$?
  secs=$(( $(date +%s) - t ))
  { echo "---- $f (exit $rc, ${secs}s)"; echo "$tap"; } >> "$LOG"
  count() { echo "$tap" | sed -n "s/^# $1 \([0-9]*\)$/\1/p" | tail -n 1; }
  pass=$(count pass); fail=$(count fail); skip=$(count skipped)
  [ $rc -eq 124 ] && fail="timeout"
  [ -z "$fail" ] && fail="crash($rc)"
  # on a GPU machine a test that skips for want of CUDA is a failure of this check
  if [ $GPU_PRESENT = 1 ] && echo "$tap" | grep -q "# SKIP no usable CUDA"; then fail="no-cuda"; fi
  [ "$fail" != "0" ] && FAILED=$((FAILED + 1))
  # the failing assertions, so the tail of the output shows them
  echo "$tap" | grep -E "^not ok|error: |CUDA launch|failed:|# CUDA device" | head -n 12
  echo "$tap" | grep -m 1 -o "# SKIP .*" | cut -c1-200
  ROWS+=("$(printf '%-16s %6s %6s %6s %6ss' "$name" "${pass:-?}" "$fail" "${skip:-?}" "$secs")")
done

say "== kernel times"
unset XTUNER_CUDA_SYNC
TIMES=""
if [ $GPU_PRESENT = 1 ]; then
  TIMES=$(OUT=$OUT_DIR timeout 150 "${RUN[@]}" "$TIMER" 2>&1)
  echo "timing exit $?" >> "$LOG"
  echo "$TIMES" >> "$LOG"
fi

{
  [ -n "$TIMES" ] && echo "$TIMES" | tail -n 20
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
  echo "== summary (${gpu:-no GPU}, kernels ${BUILD_S}s, total $(( $(date +%s) - T0 ))s)"
  printf '%-16s %6s %6s %6s %7s\n' file pass fail skip time
  printf '%s\n' "${ROWS[@]}"
  [ $FAILED -eq 0 ] && echo "ALL PASSED" || echo "$FAILED FILE(S) FAILED"
} | tee "$OUT_DIR/summary.txt" | tee -a "$LOG"
[ $FAILED -eq 0 ]
