#!/usr/bin/env bash
# Builds a fake CUDA driver that runs the real kernels of native/cuda/ on the CPU (emu.h, emu.cpp)
# and a fake cuBLAS, into OUTDIR, so the CUDA tests can run their numbers on a machine without a
# GPU (slowly: every CUDA thread is a fiber). Needs g++ and the kernel build (for the kernel list).
#   test/cuda/fake/build-emu.sh /tmp/emu
#   XTUNER_LIBCUDA=/tmp/emu/libcuda.so.1 XTUNER_LIBCUBLAS=/tmp/emu/libcublas.so.13 \
#     node --import tsx --test test/cuda/layers.test.ts
# FAKE_CUDA_ORDER=reverse runs blocks, warps and lanes last first (a missing barrier shows in one of
# the two orders); FAKE_CUDA_ASYNC=early lands cp.async copies at their issue.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:?usage: build-emu.sh OUTDIR}
FAKE=test/cuda/fake
mkdir -p "$OUT/src"
ls native/cuda/build/*.params >/dev/null || { echo "build-emu: run scripts/build-cuda.sh first" >&2; exit 1; }
cp native/cuda/*.cuh "$OUT/src/"
{
  for f in native/cuda/*.cu; do
    n=$(basename "$f" .cu)
    # dynamic shared memory becomes the emulator's per-launch buffer
    sed -E 's/extern __shared__ float ([A-Za-z_]+)\[\];/float* \1 = (float*)emu_dynamic_smem();/' "$f" > "$OUT/src/$n.cpp"
    echo "#include \"$n.cpp\""
  done
  echo 'struct EmuEntry { const char* name; void (*call)(void**); const std::size_t* param_sizes; };'
  echo 'extern "C" const EmuEntry emu_table[] = {'
  cat native/cuda/build/*.params | awk 'NF { printf "  {\"%s\", [](void** p) { emu_invoke(%s, p); }, emu_param_sizes(%s)},\n", $1, $1, $1 }'
  echo '  {nullptr, nullptr, nullptr}};'
} > "$OUT/src/kernels.cpp"
CXX="g++ -std=c++17 -O2 -fPIC -w -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=0 -I$FAKE/include -I$OUT/src"
rm -f "$OUT"/*.o "$OUT"/*.so.*
pids=()
$CXX -include $FAKE/emu.h -c -o "$OUT/kernels.o" "$OUT/src/kernels.cpp" & pids+=($!)
$CXX -c -o "$OUT/emu.o" $FAKE/emu.cpp & pids+=($!)
gcc -O2 -fPIC -DFAKE_EMULATE -c -o "$OUT/libcuda.o" $FAKE/libcuda.c & pids+=($!)
gcc -O2 -fPIC -shared -o "$OUT/libcublas.so.13" $FAKE/libcublas.c & pids+=($!)
for p in "${pids[@]}"; do wait "$p" || { echo "build-emu: a compile failed (see above)" >&2; exit 1; }; done
g++ -shared -o "$OUT/libcuda.so.1" "$OUT/libcuda.o" "$OUT/emu.o" "$OUT/kernels.o"
echo "build-emu: $OUT/libcuda.so.1 $OUT/libcublas.so.13"
