#!/usr/bin/env bash
# The CUDA tests on the CPU, for a machine without a GPU: builds the kernels (nvcc, for the kernel
# list and a check that they compile), the kernel emulator (test/cuda/fake/build-emu.sh) and runs
# test/cuda/*.test.ts (or the files given) against it twice, warps in order and in reverse
# (FAKE_CUDA_ORDER), so a missing barrier shows whichever way it runs. Slow (every CUDA thread is a
# fiber): a few minutes on two cores. Exit status: 0 when both runs pass.
# Usage: scripts/emu-check.sh [test files...]
set -euo pipefail
cd "$(dirname "$0")/.."
EMU=${EMU_DIR:-$(mktemp -d)}
scripts/build-cuda.sh
bash test/cuda/fake/build-emu.sh "$EMU"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/cuda/*.test.ts)
status=0
for order in forward reverse; do
  echo "== emulator, $order order"
  FAKE_CUDA_ORDER=$order XTUNER_LIBCUDA="$EMU/libcuda.so.1" XTUNER_LIBCUBLAS="$EMU/libcublas.so.13" FAKE_CUDA_MEM=4000000000 \
    node --import tsx --test "${files[@]}" || status=1
done
exit $status
