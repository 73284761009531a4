#!/usr/bin/env bash
# One device call of a short GPU session, in order of what a session most needs back: the
# benchmark beside the peer (gpu-bench.sh quick: its guards test the tensor-core attention and the
# captured step first), then every test/cuda file and the kernel times (gpu-check.sh), then the CLI
# (gpu-cli.sh), then, where native/cuda/build-cu11 exists, gpu-check.sh again on that build (the
# kernels older drivers load; a card with a newer driver runs them too) into $OUT/cu11. Each stage gets what is left of SECONDS (default 540: a 600 s call less the
# start-up of node and the unpacking), so a slow stage cuts the later ones short instead of the
# device tool cutting the call and everything after it; each stage's files are already under $OUT.
#   OUT=$OUT scripts/gpu-session.sh [SECONDS]
# Here, before the call: npm ci && scripts/device-pack.sh; carry [".device", "dist"].
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-540}
END=$(( $(date +%s) + BUDGET ))
OUT_DIR=${OUT:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
export OUT=$OUT_DIR
STAGES=()
stage() { # NAME SCRIPT [ARGS]: runs while at least 20 s are left, for what is left
  local name=$1 left=$(( END - $(date +%s) ))
  shift
  if [ $left -lt 20 ]; then
    STAGES+=("$(printf '%-8s skipped (%ss left)' "$name" "$left")")
    return
  fi
  local s=$(date +%s)
  timeout "$left" bash "$@"
  local rc=$?
  STAGES+=("$(printf '%-8s exit %-3s %4ss' "$name" "$rc" "$(( $(date +%s) - s ))")")
}
stage bench scripts/gpu-bench.sh quick
stage check scripts/gpu-check.sh
stage cli scripts/gpu-cli.sh
[ -d native/cuda/build-cu11 ] && XTUNER_CUDA_KERNELS=native/cuda/build-cu11 OUT=$OUT_DIR/cu11 stage cu11 scripts/gpu-check.sh
printf '%s\n' "== gpu-session (${BUDGET}s budget)" "${STAGES[@]}" | tee "$OUT_DIR/session.txt"
