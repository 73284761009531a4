// `xtuner env`: what this installation runs on, for bug reports: Node, platform, the compute
// backends found (and why not, where one is missing), versions of the key packages, and the
// environment variables xtuner reads.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCommandArgs, type Command } from '../command.ts';
import { hfHubCacheDir } from '../../io/hf-hub.ts';
import type { BackendProbe, LibraryProbe } from '../../backends/index.ts';

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const KEY_PACKAGES = ['koffi', 'zod', 'yaml', 'tsx', '@huggingface/tokenizers', '@huggingface/jinja', '@sctg/sentencepiece-js'];
const ENV_VARS = ['HF_HOME', 'HF_HUB_CACHE', 'HF_ENDPOINT', 'HF_HUB_OFFLINE', 'HF_TOKEN', 'CUDA_VISIBLE_DEVICES', 'XTUNER_DEBUG'];

/** `version` of a package as installed beside this one (node_modules up the tree), or null. */
export function installedVersion(name: string, from: string = PACKAGE_ROOT): string | null {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
      return pkg.version ?? null;
    } catch {
      // not here; look further up
    }
    if (path.dirname(dir) === dir) return null;
  }
}

function library(probe: LibraryProbe): string {
  return probe.found ? `found (${probe.path})${probe.reason ? `, but ${probe.reason}` : ''}` : `not found: ${probe.reason}`;
}

/** The backend lines: what was found, and why not where something is missing. */
export function backendLines(probe: BackendProbe): [string, string][] {
  const { cpu, cuda } = probe;
  const blas = cpu.blas.kernel === 'openblas' ? `OpenBLAS (${cpu.blas.path})` : `none, JS kernel (${cpu.blas.reason})`;
  const driver = cuda.driver.found
    ? `${library(cuda.driver)}; version ${cuda.driver.version ?? 'unknown'}; GPUs: ${cuda.driver.devices.join(', ') || 'none'}`
    : library(cuda.driver);
  return [
    ['CPU backend', `available, ${cpu.cores} cores`],
    ['CPU BLAS', blas],
    ['CUDA driver', driver],
    ['cuBLAS', library(cuda.cublas)],
    ['CUDA backend', cuda.available ? 'available' : `not available: ${cuda.backend.reason ?? 'see above'}`],
    ['CUDA kernels', cuda.kernels.found ? cuda.kernels.path! : cuda.available ? `not usable: ${cuda.kernels.reason}` : '-'],
  ];
}

function ownVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

export const command: Command = {
  name: 'env',
  summary: 'Print the environment: Node, platform, backends, package versions',
  usage: 'xtuner env',
  async run(argv) {
    parseCommandArgs(command, argv, {});
    // Probing loads native libraries (koffi): only here, not when the command list is read.
    const { probeBackends } = await import('../../backends/index.ts');
    const row = (key: string, value: string) => `${key.padEnd(26)}${value}`;
    const lines = [
      row('xtuner-ts', ownVersion()),
      row('Node.js', process.version),
      row('platform', `${process.platform} ${process.arch} (${os.release()})`),
      row('CPU', `${os.cpus()[0]?.model.trim() ?? 'unknown'} x ${os.availableParallelism()}`),
      row('memory', `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`),
      '',
      ...backendLines(probeBackends()).map(([key, value]) => row(key, value)),
      '',
      ...KEY_PACKAGES.map((name) => row(name, installedVersion(name) ?? 'not found')),
      '',
      row('Hugging Face cache', hfHubCacheDir()),
      ...ENV_VARS.map((name) => row(name, process.env[name] === undefined ? '(unset)' : name === 'HF_TOKEN' ? '(set)' : process.env[name]!)),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
