// Faults through the real CLI: Ctrl-C during `xtuner train` (finishes the iteration, saves,
// exits with 130; `--resume` then continues with the losses of an uninterrupted run), a second
// train into the busy work folder (refused), a corrupt checkpoint passed to --resume, a NaN loss,
// out of GPU memory in chat (on a simulated GPU).

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { kernelDir } from '../../src/backends/cuda/kernels.ts';
import { makeAssistantRecords, recordsText } from '../../src/data/index.ts';
import { buildFakeCuda } from '../cuda/fake/build.ts';
import { TINY_LLAMA } from '../train/tiny-llama.ts';
import { readLogs, scratchWithTinyModel, startXtuner, xtuner } from './cli.ts';

const dir = scratchWithTinyModel('xtuner-faults-', TINY_LLAMA);
// a simulated GPU (host memory, no kernels run) for out-of-memory on CUDA
const fakeCuda = buildFakeCuda();
test.after(() => fs.rmSync(fakeCuda.dir, { recursive: true, force: true }));
const CUDA_SKIP = fakeCuda.skip || (fs.existsSync(path.join(kernelDir(), 'STAMP')) ? false : `kernels not built (${kernelDir()}): scripts/build-cuda.sh`);
fs.mkdirSync(path.join(dir, 'data'));
fs.writeFileSync(path.join(dir, 'data', 'assistant.jsonl'), recordsText('x.jsonl', makeAssistantRecords('faults', 60)));
fs.writeFileSync(
  path.join(dir, 'run.json'),
  JSON.stringify({
    pretrained_model_name_or_path: 'examples/tiny-assistant',
    data_path: 'data/assistant.jsonl',
    dataset_format: 'openai',
    prompt_template: 'internlm2_chat',
    max_length: 64,
    accumulative_counts: 1,
    max_iters: 150,
    lr: 1e-3,
    lora: { r: 4, lora_alpha: 8, lora_dropout: 0.1 },
    save_steps: 1000,
    evaluation_inputs: [],
    log_interval: 1,
    device: 'cpu',
  }),
);

/** The one-line error the CLI prints for a user error: `error: ...` and a hint, no stack trace. */
function assertCleanError(stderr: string, message: RegExp): void {
  const lines = stderr.trim().split('\n');
  assert.match(lines[0]!, /^error: /);
  assert.match(lines[0]!, message);
  assert.ok(lines.slice(1).every((l) => l.startsWith('hint: ')), stderr);
}

test('Ctrl-C saves and stops; a second train is refused meanwhile; --resume continues exactly', async () => {
  const run = startXtuner(dir, 'train', 'run.json');
  await run.waitFor(/Iter\(train\) \[\s*1\/150\]/);
  // Paused, the run cannot finish (and free its folder) while the second train tries its luck.
  run.child.kill('SIGSTOP');
  const second = xtuner(dir, 'train', 'run.json');
  assert.equal(second.status, 1);
  assertCleanError(second.stderr, new RegExp(`work folder .*work_dirs/run is in use by another xtuner train \\(pid ${run.child.pid}`));

  // Ctrl-C, delivered as the run continues.
  run.child.kill('SIGINT');
  run.child.kill('SIGCONT');
  const first = await run.exited;
  assert.equal(first.status, 130, `exit code of a run stopped by Ctrl-C after saving\n${first.stderr}`);
  const m = /interrupted at iteration (\d+) of 150; resume with --resume (\S+)/.exec(first.stdout);
  assert.ok(m, first.stdout);
  const stoppedAt = Number(m[1]);
  const work = path.join(dir, 'work_dirs', 'run');
  assert.equal(m[2], path.join(work, `iter_${stoppedAt}`));
  assert.equal(fs.readFileSync(path.join(work, 'last_checkpoint'), 'utf8').trim(), `iter_${stoppedAt}`);
  assert.ok(!fs.existsSync(path.join(work, 'train.lock')));

  const resumed = xtuner(dir, 'train', 'run.json', '--resume');
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`resumed from .*iter_${stoppedAt} at iteration ${stoppedAt}`));

  const whole = xtuner(dir, 'train', 'run.json', '--work-dir', 'whole');
  assert.equal(whole.status, 0, whole.stderr);
  const split = readLogs(work);
  assert.deepEqual(split.map((l) => l.iter), Array.from({ length: 150 }, (_, i) => i + 1));
  assert.deepEqual(split.map((l) => l.loss), readLogs(path.join(dir, 'whole')).map((l) => l.loss));

  // The finished run's checkpoint, damaged, is refused by --resume with one clear message.
  const file = path.join(work, 'iter_150', 'trainable.safetensors');
  fs.truncateSync(file, fs.statSync(file).size - 8);
  const bad = xtuner(dir, 'train', 'run.json', '--resume', path.join(work, 'iter_150'));
  assert.equal(bad.status, 1);
  assertCleanError(bad.stderr, /checkpoint .*iter_150 is not usable: trainable.safetensors has \d+ bytes, expected \d+ \(truncated or replaced\)/);
});

test('a NaN loss stops the run with one message naming the iteration', () => {
  const r = xtuner(dir, 'train', 'run.json', '--work-dir', 'nan', '--cfg-options', 'lr=1e30', 'warmup_ratio=0', 'max_iters=5');
  assert.equal(r.status, 1);
  assertCleanError(r.stderr, /^error: loss is (NaN|Infinity) at iteration 2 \(epoch 1, batch 2 of \d+\); training stopped$/);
});

test('out of GPU memory in chat says what makes the model fit there (--bits 4), not what training would change', { skip: CUDA_SKIP }, () => {
  const saved = { ...process.env };
  // room for the weights, not for the first GEMM's cuBLAS workspace (32 MiB)
  Object.assign(process.env, fakeCuda.env(3 * 1024 * 1024));
  try {
    const r = xtuner(dir, 'chat', 'examples/tiny-assistant', '--device', 'cuda', '--prompt', 'hi');
    assert.equal(r.status, 1, r.stderr);
    // after the log's load line: the error and its hint, no stack
    assertCleanError(r.stderr.replace(/^Load LLM from .*\n/, ''), /CUDA out of memory on Fake GPU \(cuda:0\): allocating /);
    assert.match(r.stderr, /^hint: --bits 4 loads the linear layers in NF4 .*; a lower --max-new-tokens .*; --device cpu; close other processes/m);
    assert.doesNotMatch(r.stderr, /batch_size/);
  } finally {
    process.env = saved;
  }
});
