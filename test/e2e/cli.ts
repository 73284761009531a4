// Running the real `xtuner` CLI (the TypeScript sources through tsx) from end-to-end tests, and
// a scratch folder with the tiny-assistant model and its data, as a user would have them.

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyAssistant } from '../../examples/tiny-assistant/build-model.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = path.join(REPO, 'src', 'cli', 'main.ts');
const TSX = import.meta.resolve('tsx');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function argvOf(args: readonly string[]): string[] {
  return ['--import', TSX, MAIN, ...args];
}

/** Runs `xtuner ARGS` in `cwd` to completion. */
export function xtuner(cwd: string, ...args: string[]): CliResult {
  const r = spawnSync(process.execPath, argvOf(args), { cwd, encoding: 'utf8', env: { ...process.env, XTUNER_DEBUG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `xtuner ARGS` in `cwd`; `exited` resolves with its output when it ends. */
export function startXtuner(cwd: string, ...args: string[]): { child: ChildProcessWithoutNullStreams; exited: Promise<CliResult>; waitFor(re: RegExp): Promise<void> } {
  const child = spawn(process.execPath, argvOf(args), { cwd, env: { ...process.env, XTUNER_DEBUG: '' } });
  let stdout = '';
  let stderr = '';
  const watchers: Array<{ re: RegExp; resolve: () => void }> = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    for (const w of [...watchers]) {
      if (w.re.test(stdout)) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<CliResult>((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
  return {
    child,
    exited,
    waitFor: (re) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(stdout)) return resolve();
        watchers.push({ re, resolve });
        void exited.then((r) => reject(new Error(`xtuner exited (${r.status}) before printing ${re}:\n${r.stdout}\n${r.stderr}`)));
      }),
  };
}

/** A scratch folder holding examples/tiny-assistant/ (random weights; `overrides` change config.json). */
export function scratchWithTinyModel(prefix: string, overrides: Record<string, unknown> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  buildTinyAssistant(path.join(dir, 'examples', 'tiny-assistant'), 0, overrides);
  return dir;
}

/** The records of a work folder's logs.jsonl. */
export function readLogs(workDir: string): Array<{ iter: number; loss: number }> {
  return fs
    .readFileSync(path.join(workDir, 'logs.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { iter: number; loss: number });
}
