# Sourced by the GPU scripts (gpu-check.sh, gpu-bench.sh, gpu-cli.sh): puts node on PATH (from the
# carried .device/node-v20*.xz when the machine has none), unpacks the runtime modules that
# scripts/device-pack.sh packed when node_modules is missing, and the packed kernels when
# native/cuda/build is missing, and sets RUN, the command that runs
# the TypeScript (node with tsx).
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
if [ ! -f native/cuda/build/STAMP ] && [ -f .device/cuda-build.tar.xz ]; then
  tar -C native/cuda -xJf .device/cuda-build.tar.xz
fi
for m in koffi tsx; do
  [ -d node_modules/$m ] || { echo "$(basename "$0"): node_modules/$m is missing (npm ci, or scripts/device-pack.sh)" >&2; exit 2; }
done
RUN=(node --import tsx)
