// The CLI driven as a user drives it: a spawned `node --import tsx src/cli/main.ts ...`.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cudaStatus } from '../../src/backends/cuda/index.ts';
import { listBuiltinConfigs } from '../../src/config/index.ts';
import { commands } from '../../src/cli/commands/index.ts';
import { EXIT_ERROR, reportError } from '../../src/cli/main.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');
// Resolved here, so the CLI also runs from folders outside the repository.
const TSX = import.meta.resolve('tsx');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function xtuner(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX, MAIN, ...args],
      { cwd: options.cwd ?? ROOT, env: { ...process.env, XTUNER_DEBUG: '', ...options.env }, timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-cli-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('help: `xtuner --help` lists every command; `xtuner help CMD` equals `xtuner CMD --help`', async () => {
  const [top, bare, helpList, listHelp, listH] = await Promise.all([
    xtuner(['--help']),
    xtuner([]),
    xtuner(['help', 'list-cfg']),
    xtuner(['list-cfg', '--help']),
    xtuner(['list-cfg', '-p', 'x', '-h']),
  ]);
  assert.equal(top.code, 0);
  assert.equal(bare.stdout, top.stdout);
  for (const { name } of commands) assert.match(top.stdout, new RegExp(`^  ${name} +\\S`, 'm'), name);
  assert.equal(helpList.code, 0);
  assert.match(helpList.stdout, /^List the built-in configs\n\nusage: xtuner list-cfg \[-p PATTERN\]\n/);
  assert.equal(listHelp.stdout, helpList.stdout);
  assert.equal(listH.stdout, helpList.stdout);
});

test('every command in the list loads, has its own name, and a usage that starts with it', async () => {
  for (const entry of commands) {
    const { command } = await entry.load();
    assert.equal(command.name, entry.name);
    assert.ok(command.usage.startsWith(`xtuner ${command.name}`), command.name);
    assert.ok(command.summary.length > 0 && !command.summary.includes('\n'), command.name);
  }
});

test('mistakes: an unknown command or flag is one line with a suggestion and exit code 2; no stack', async () => {
  const [cmd, flag, missing, option, bits, device, clip] = await Promise.all([
    xtuner(['lsit-cfg']),
    xtuner(['list-cfg', '--patern', 'qwen']),
    xtuner(['copy-cfg', 'internlm2_chat_1_8b_qlora_alpaca_e3']),
    xtuner(['--frobnicate']),
    xtuner(['chat', 'some-model', '--bits', '8']),
    xtuner(['convert', 'merge', 'base', 'adapter', 'out', '--device', 'gpu']),
    xtuner(['convert', 'merge', 'base', 'adapter', 'out', '--is-clip']),
  ]);
  const stopWords = await xtuner(['chat', 'some-model', '--stop-words', '--prompt', 'hi']); // argparse's nargs='+'
  assert.equal(stopWords.code, 2);
  assert.match(stopWords.stderr, /^error: chat: --stop-words needs at least one word\n/);
  // XTuner's own flag: accepted (safetensors is what is always written), so the run fails on the missing config instead
  const safe = await xtuner(['convert', 'pth_to_hf', 'no-such-config.ts', 'ckpt', 'out', '--safe-serialization']);
  assert.equal(safe.code, 1);
  assert.match(safe.stderr, /no-such-config\.ts/);
  assert.equal(device.code, 2);
  assert.match(device.stderr, /^error: convert merge: --device must be auto, cpu or cuda, got 'gpu'\n/);
  assert.equal(clip.code, 2);
  assert.match(clip.stderr, /^error: convert merge: --is-clip .*not supported yet/);
  assert.equal(cmd.code, 2);
  assert.equal(cmd.stderr, 'error: unknown command "lsit-cfg" (did you mean "list-cfg"?)\nhint: see `xtuner --help`\n');
  assert.equal(flag.code, 2);
  assert.equal(flag.stderr, 'error: list-cfg: unknown option --patern (did you mean "--pattern"?)\nhint: see `xtuner list-cfg --help`\n');
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error: copy-cfg: missing DIR\n/);
  assert.equal(option.code, 2);
  assert.equal(bits.code, 2);
  assert.match(bits.stderr, /^error: chat: --bits 8 \(LLM.int8\) is not supported; --bits 4 loads the model in NF4\n/);
  assert.equal(cmd.stdout + flag.stdout + missing.stdout + option.stdout, '');
});

test('list-cfg prints every config in XTuner\'s layout; -p filters case-insensitively', async () => {
  const [all, qwen] = await Promise.all([xtuner(['list-cfg']), xtuner(['list-cfg', '-p', 'QWEN2_5'])]);
  assert.equal(all.code, 0);
  const names = listBuiltinConfigs().map((c) => c.name);
  assert.equal(all.stdout, ['==========================CONFIGS===========================', ...names, '='.repeat(61), ''].join('\n'));
  assert.equal(
    qwen.stdout,
    [
      '==========================CONFIGS===========================',
      'PATTERN: QWEN2_5',
      '-------------------------------',
      'qwen2_5_0_5b_instruct_qlora_alpaca_e3',
      'qwen2_5_1_5b_instruct_qlora_alpaca_e3',
      'qwen2_5_7b_instruct_qlora_alpaca_e3',
      '='.repeat(61),
      '',
    ].join('\n'),
  );
});

test('copy-cfg NAME DIR copies to DIR/NAME_copy.ts; a misspelt NAME gets a suggestion and exit code 1', async () => {
  const run = await xtuner(['copy-cfg', 'internlm2_chat_1_8b_qlora_alpaca_e3', 'cfg'], { cwd: tmp });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, `Copy to ${path.join('cfg', 'internlm2_chat_1_8b_qlora_alpaca_e3_copy.ts')}\n`);
  assert.ok(fs.existsSync(path.join(tmp, 'cfg', 'internlm2_chat_1_8b_qlora_alpaca_e3_copy.ts')));
  const again = await xtuner(['copy-cfg', 'internlm2_chat_1_8b_qlora_alpaca_e3', 'cfg'], { cwd: tmp });
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists\nhint: pass --force/);
  const typo = await xtuner(['copy-cfg', 'internlm2_chat_1_8b_qlora_alpaca', 'cfg'], { cwd: tmp });
  assert.equal(typo.code, 1);
  assert.match(typo.stderr, /^error: no built-in config named "internlm2_chat_1_8b_qlora_alpaca" \(did you mean "internlm2_chat_1_8b_qlora_alpaca_e3"\?\)\n/);
});

test('env names Node, the platform, the backends and the key packages', async () => {
  const run = await xtuner(['env']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`^Node\\.js +${process.version.replaceAll('.', '\\.')}$`, 'm'));
  assert.match(run.stdout, new RegExp(`^platform +${process.platform} ${process.arch}`, 'm'));
  assert.match(run.stdout, /^koffi +\d+\.\d+\.\d+$/m);
  assert.match(run.stdout, /^zod +\d+\.\d+\.\d+$/m);
  // Backends: found, or not found with the reason.
  assert.match(run.stdout, /^CPU backend +available, \d+ cores$/m);
  assert.match(run.stdout, /^CPU BLAS +(OpenBLAS \(.+\)|none, JS kernel \(.+\))$/m);
  assert.match(run.stdout, /^CUDA driver +(found \(.+|not found: .+)$/m);
  assert.match(run.stdout, /^CUDA backend +(available|not available: .+)$/m);
  assert.match(run.stdout, /^CUDA kernels +(.+native\/cuda\/build.*|not usable: .+|-)$/m);
});

test('a bug (not an XtunerError) prints its message and where to find the stack; XTUNER_DEBUG=1 prints the stack', () => {
  const written: string[] = [];
  const original = process.stderr.write;
  const debug = process.env.XTUNER_DEBUG;
  process.stderr.write = ((chunk: string) => (written.push(chunk), true)) as typeof process.stderr.write;
  try {
    delete process.env.XTUNER_DEBUG;
    assert.equal(reportError(new TypeError('x is undefined')), EXIT_ERROR);
    process.env.XTUNER_DEBUG = '1';
    reportError(new TypeError('y is undefined'));
  } finally {
    process.stderr.write = original;
    if (debug === undefined) delete process.env.XTUNER_DEBUG;
    else process.env.XTUNER_DEBUG = debug;
  }
  assert.equal(written[0], 'error: x is undefined (set XTUNER_DEBUG=1 for the stack)\n');
  assert.match(written[1], /^error: TypeError: y is undefined\n +at /);
});

test('convert merge --device cuda where CUDA cannot start: the reason, and no output folder', { skip: cudaStatus().available ? 'CUDA works here' : false }, async () => {
  const out = path.join(tmp, 'merged-on-cuda');
  const run = await xtuner(['convert', 'merge', 'test/fixtures/models/llama_forward/model', 'test/fixtures/models/lora/adapter', out, '--device', 'cuda']);
  assert.equal(run.code, EXIT_ERROR);
  assert.match(run.stderr, /^error: .*CUDA/);
  assert.equal(fs.existsSync(out), false);
});
