#!/usr/bin/env bash
# Packs what a GPU machine without Node tools needs into .device/ (git-ignored), so one device call
# can run scripts/gpu-check.sh, gpu-bench.sh and gpu-cli.sh:
#   .device/node-v20*.xz               the device's Node binary (from ../shared/device)
#   .device/runtime-modules.tar.xz     the runtime dependencies (tsx, koffi, zod, tokenizers, ...)
#   .device/peer_bench.py              the peer (from ../shared/peer)
#   .device/tiny-assistant/            the quickstart's model folder
#   .device/cuda-build.tar.xz          the kernels (scripts/build-cuda-release.sh: native/cuda/build,
#                                      and build-cu11 where it is current): 40 MB of fatbins are 2 MB
#                                      in xz, which keeps the carry far below 64 MiB
# and builds dist/ (npm run build). Then carry
#   [".device", "dist"]
# and start the device command with any of the three scripts (each sources device-node.sh, which
# unpacks the modules). Run from the repository root, after `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
mkdir -p .device
cp "$SHARED"/device/node-v20*.xz "$SHARED"/peer/peer_bench.py .device/
npm run --silent build
# both builds (scripts/build-cuda-release.sh); the older-driver one goes along only when it is
# current (a stale one would not match the launches' parameters)
builds=(build)
if scripts/build-cuda-release.sh; then
  [ -d native/cuda/build-cu11 ] && builds+=(build-cu11)
else
  scripts/build-cuda.sh
  echo "device-pack: native/cuda/build-cu11 is left out of the pack"
fi
rm -rf .device/tiny-assistant
node --import tsx examples/tiny-assistant/build-model.ts .device/tiny-assistant >/dev/null
# the runtime dependencies of dist/ (package.json "dependencies", tsx included: it loads .ts
# configs) with their own dependencies
mods=$(node -e '
  const fs = require("fs"), path = require("path");
  const seen = new Set(), todo = Object.keys(require("./package.json").dependencies);
  while (todo.length) {
    const d = todo.pop(); if (seen.has(d)) continue; seen.add(d);
    const pj = JSON.parse(fs.readFileSync(path.join("node_modules", d, "package.json"), "utf8"));
    for (const k of Object.keys({ ...pj.dependencies, ...pj.optionalDependencies })) if (fs.existsSync(path.join("node_modules", k))) todo.push(k);
  }
  console.log([...seen].join(" "));')
tar -C node_modules -cJf .device/runtime-modules.tar.xz $mods
tar -C native/cuda -cJf .device/cuda-build.tar.xz "${builds[@]}"
du -sh .device dist | sed 's/^/device-pack: /'
echo "device-pack: carry [\".device\", \"dist\"] (64 MiB at most)"
