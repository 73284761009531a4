// `xtuner env`: what this installation runs on, for bug reports: Node, platform, the compute
// backends found (and why not, where one is missing), versions of the key packages, and the
// environment variables xtuner reads.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCommandArgs, type Command } from '../command.ts';
import { hfHubCacheDir } from '../../io/hf-hub.ts';

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
    const row = (key: string, value: string) => `${key.padEnd(26)}${value}`;
    const lines = [
      row('xtuner-ts', ownVersion()),
      row('Node.js', process.version),
      row('platform', `${process.platform} ${process.arch} (${os.release()})`),
      row('CPU', `${os.cpus()[0]?.model.trim() ?? 'unknown'} x ${os.availableParallelism()}`),
      row('memory', `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`),
      '',
      ...KEY_PACKAGES.map((name) => row(name, installedVersion(name) ?? 'not found')),
      '',
      row('Hugging Face cache', hfHubCacheDir()),
      ...ENV_VARS.map((name) => row(name, process.env[name] === undefined ? '(unset)' : name === 'HF_TOKEN' ? '(set)' : process.env[name]!)),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
