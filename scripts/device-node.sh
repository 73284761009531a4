# Sourced by the GPU scripts (gpu-check.sh, gpu-bench.sh, gpu-cli.sh): puts node on PATH (from the
# carried .device/node-v20*.xz when the machine has none), unpacks the runtime modules that
# scripts/device-pack.sh packed, and picks how to run TypeScript: `node --import
# tsx` where node_modules/tsx exists, else the plain-JavaScript bundles under .device/ (then the
# backend is told where the kernels are, since the bundles live elsewhere than the sources).
# Sets RUN (the node command, an array) and BUNDLED (1 or 0).
if ! command -v node >/dev/null; then
  xz=$(ls .device/node-v20*.xz 2>/dev/null | head -n 1)
  if [ -n "$xz" ]; then
    mkdir -p /tmp/nb && xz -dc "$xz" > /tmp/nb/node && chmod +x /tmp/nb/node && export PATH=/tmp/nb:$PATH
  fi
fi
command -v node >/dev/null || { echo "$(basename "$0"): node not found (put node >= 20 on PATH)" >&2; exit 2; }
if [ ! -d node_modules/koffi ] && [ -f .device/runtime-modules.tar.xz ]; then  # packed by scripts/device-pack.sh
  mkdir -p node_modules && tar -C node_modules -xJf .device/runtime-modules.tar.xz
fi
[ -d node_modules/koffi ] || { echo "$(basename "$0"): node_modules/koffi is missing" >&2; exit 2; }
if [ -d node_modules/tsx ]; then
  RUN=(node --import tsx); BUNDLED=0
else
  RUN=(node); BUNDLED=1
  export XTUNER_CUDA_KERNELS=$PWD/native/cuda/build
fi
