#!/usr/bin/env bash
# Compiles native/cuda/*.cu into one fatbin per file in native/cuda/build/: machine code for
# sm_80, sm_86, sm_89, sm_90 and compute_90 PTX (newer GPUs JIT it). Beside each, <file>.params
# lists every kernel's parameter kinds (read off the PTX), which the backend checks its launches
# against. Skips the work when the sources and flags are unchanged since the last build
# (build/STAMP), so it is cheap to call again.
# Usage: scripts/build-cuda.sh [--force]    (NVCC=/path/to/nvcc to pick a compiler)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=native/cuda
OUT=$SRC/build
ARCHS="-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_86,code=sm_86 -gencode=arch=compute_89,code=sm_89 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_90,code=compute_90"
FLAGS="-O3 -std=c++17 -lineinfo"
# the stamp covers sources and flags, not the nvcc patch level: a build carried to a machine with
# another CUDA 13 nvcc stays valid (--force rebuilds anyway)
stamp=$( { echo "$ARCHS $FLAGS"; cat "$SRC"/*.cu "$SRC"/*.cuh "$SRC"/params.awk; } | sha256sum | cut -c1-16)
if [ "${1:-}" != "--force" ] && [ -f "$OUT/STAMP" ] && [ "$(cat "$OUT/STAMP")" = "$stamp" ]; then
  echo "build-cuda: $OUT is up to date ($stamp)"
  exit 0
fi
NVCC=${NVCC:-$(command -v nvcc || true)}
for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do [ -n "$NVCC" ] || { [ -x "$c" ] && NVCC=$c; }; done
if [ -z "$NVCC" ]; then
  echo "build-cuda: nvcc not found (install the CUDA toolkit >= 12.0, or set NVCC=/path/to/nvcc)" >&2
  exit 1
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.fatbin "$OUT"/*.params "$OUT/STAMP"
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
echo "$stamp" > "$OUT/STAMP"
