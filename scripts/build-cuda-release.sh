#!/usr/bin/env bash
# The kernels a release ships (npm pack's prepack, scripts/device-pack.sh): native/cuda/build with
# the current nvcc (CUDA 13: drivers >= 580), and native/cuda/build-cu11 with CUDA 11.8's nvcc
# (NVCC11, default /opt/cu118/nvcc: drivers >= 525), so users of older drivers get kernels too.
# Without that nvcc, an existing build-cu11 must already match the sources (a stale one would not
# match the launches' parameters): otherwise this fails and says what to do; without either, the
# release's kernels load on drivers >= 580 only, and it says so.
#   scripts/build-cuda-release.sh      (NVCC=... for the first build, NVCC11=... for the second)
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC11=${NVCC11:-/opt/cu118/nvcc}
CU11=native/cuda/build-cu11
scripts/build-cuda.sh
if [ -x "$NVCC11" ]; then
  NVCC=$NVCC11 CUDA_BUILD_DIR=$CU11 scripts/build-cuda.sh
elif [ -d "$CU11" ]; then
  if ! CUDA_BUILD_DIR=$CU11 scripts/build-cuda.sh --check; then
    echo "build-cuda-release: $NVCC11 not found, so $CU11 cannot be brought up to date: set NVCC11=/path/to/cuda-11.8/bin/nvcc, or remove $CU11 (kernels for drivers >= 580 only)" >&2
    exit 1
  fi
else
  echo "build-cuda-release: no CUDA 11.8 nvcc ($NVCC11; set NVCC11): the kernels load on drivers >= 580 only"
fi
