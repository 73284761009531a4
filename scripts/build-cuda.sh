#!/usr/bin/env bash
# Compiles native/cuda/*.cu into one fatbin per file in native/cuda/build/ (or CUDA_BUILD_DIR):
# machine code for sm_80, sm_86, sm_89, sm_90 and compute_90 PTX (newer GPUs JIT it). Beside each,
# <file>.params lists every kernel's parameter kinds (read off the PTX), which the backend checks
# its launches against; TOOLKIT holds the nvcc's CUDA version. Machine code of CUDA M.x loads on
# drivers of CUDA M.0 or newer only (13: driver >= 580; 12: >= 525; 11.8: >= 450), and the backend
# takes the newest build its driver can load, so a release carries the current nvcc's build and
# one of an older toolkit for older drivers:
#   scripts/build-cuda.sh
#   NVCC=/path/to/cuda-11.8/nvcc CUDA_BUILD_DIR=native/cuda/build-cu11 scripts/build-cuda.sh
# Skips the work when the sources, flags and CUDA major version are unchanged since the last build
# (STAMP), so it is cheap to call again.
# Usage: scripts/build-cuda.sh [--force | --check]    (NVCC=/path/to/nvcc to pick a compiler, >= 11.8)
#   --check: compiles nothing; exits 1 where the build is missing or out of date
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=native/cuda
OUT=${CUDA_BUILD_DIR:-$SRC/build}
ARCHS="-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_86,code=sm_86 -gencode=arch=compute_89,code=sm_89 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90"
FLAGS="-O3 -std=c++17"
if [ "${1:-}" = --check ]; then
  NVCC="" # judged by the build's own TOOLKIT
else
  NVCC=${NVCC:-$(command -v nvcc || true)}
  for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do [ -n "$NVCC" ] || { [ -x "$c" ] && NVCC=$c; }; done
fi
# the toolkit's version (from nvcc, or the existing build's when there is no nvcc here)
if [ -n "$NVCC" ]; then
  toolkit=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
else
  toolkit=$(cat "$OUT/TOOLKIT" 2>/dev/null || true)
fi
# source lines in the machine code, for profilers (ptxas 11.8 crashes on them for sm_90)
[ "${toolkit%%.*}" = 11 ] || FLAGS="$FLAGS -lineinfo"
# the stamp covers sources, flags and the CUDA major version, not the minor or patch level: a build
# carried to a machine with another CUDA 13 nvcc stays valid (--force rebuilds anyway)
stamp=$( { echo "$ARCHS $FLAGS ${toolkit%%.*}"; cat "$SRC"/*.cu "$SRC"/*.cuh "$SRC"/params.awk; } | sha256sum | cut -c1-16)
if [ "${1:-}" != "--force" ] && [ -f "$OUT/STAMP" ] && [ "$(cat "$OUT/STAMP")" = "$stamp" ]; then
  echo "build-cuda: $OUT is up to date ($stamp)"
  exit 0
fi
if [ "${1:-}" = --check ]; then
  echo "build-cuda: $OUT is missing or out of date" >&2
  exit 1
fi
if [ -z "$NVCC" ]; then
  echo "build-cuda: nvcc not found (install the CUDA toolkit >= 11.8, or set NVCC=/path/to/nvcc)" >&2
  exit 1
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.fatbin "$OUT"/*.params "$OUT/STAMP" "$OUT/TOOLKIT"
echo "build-cuda: $("$NVCC" --version | tail -n 1) -> $OUT"
export NVCC ARCHS FLAGS SRC OUT
# one nvcc per source file, as many at once as there are cores
ls "$SRC"/*.cu | xargs -P "$(nproc)" -I{} sh -c '
  f={}; n=$(basename "$f" .cu)
  "$NVCC" $FLAGS $ARCHS -fatbin -o "$OUT/$n.fatbin.tmp" "$f" && mv "$OUT/$n.fatbin.tmp" "$OUT/$n.fatbin" &&
  "$NVCC" $FLAGS -arch=compute_90 -ptx -o "$OUT/$n.ptx" "$f" &&
  awk -f "$SRC/params.awk" "$OUT/$n.ptx" > "$OUT/$n.params" && rm "$OUT/$n.ptx" && echo "  $n.fatbin"'
for f in "$SRC"/*.cu; do
  [ -f "$OUT/$(basename "$f" .cu).params" ] || { echo "build-cuda: $f failed" >&2; exit 1; }
done
echo "$toolkit" > "$OUT/TOOLKIT"
echo "$stamp" > "$OUT/STAMP"
