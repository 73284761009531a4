// The trainer on a fixture-sized model (1-layer Llama, the tiny-assistant tokenizer, 40 samples):
// exact resume (LoRA with dropout, gradient accumulation, across epochs; full fine-tuning), an
// interrupt that saves, NaN/inf loss, a locked work folder, a corrupt checkpoint.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateConfig, type XtunerConfig } from '../../src/config/index.ts';
import { makeAssistantRecords, recordsText } from '../../src/data/index.ts';
import { XtunerError } from '../../src/errors.ts';
import { InterruptFlag } from '../../src/train/interrupt.ts';
import { train } from '../../src/train/trainer.ts';
import { LOCK_FILE } from '../../src/train/work-dir.ts';
import { buildTinyAssistant } from '../../examples/tiny-assistant/build-model.ts';
import { probeBackends } from '../../src/backends/index.ts';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-trainer-'));
const MODEL = buildTinyAssistant(path.join(ROOT, 'model'), 0, {
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 16,
});
const DATA = path.join(ROOT, 'data.jsonl');
fs.writeFileSync(DATA, recordsText(DATA, makeAssistantRecords('tester', 40)));

const quiet = { write: () => true, isTTY: false };

function config(overrides: Record<string, unknown> = {}): XtunerConfig {
  return validateConfig(
    {
      pretrained_model_name_or_path: MODEL,
      data_path: DATA,
      dataset_format: 'openai',
      prompt_template: 'internlm2_chat',
      max_length: 128,
      batch_size: 2,
      accumulative_counts: 2,
      max_iters: 8,
      lr: 1e-3,
      warmup_ratio: 0.25,
      save_steps: 100,
      save_total_limit: 2,
      evaluation_inputs: [],
      log_interval: 1,
      lora: { r: 4, lora_alpha: 8, lora_dropout: 0.1 },
      device: 'cpu',
      ...overrides,
    },
    'test config',
  );
}

function workDir(name: string): string {
  return path.join(ROOT, name);
}

/** Trains, recording each iteration's loss; interrupts (as Ctrl-C does) after iteration `stopAt`. */
async function run(cfg: XtunerConfig, dir: string, opts: { stopAt?: number; resume?: string } = {}) {
  const losses: number[] = [];
  const interrupt = new InterruptFlag();
  const result = await train({
    config: cfg,
    workDir: dir,
    resume: opts.resume ?? null,
    out: quiet,
    interrupt,
    onIteration: ({ iter, loss }) => {
      losses.push(loss);
      if (iter === opts.stopAt) interrupt.requested = true;
    },
  });
  return { result, losses };
}

for (const [method, overrides] of [
  ['LoRA with dropout, accumulation, across epochs', {}],
  ['full fine-tuning', { lora: null, max_iters: 4, accumulative_counts: 1, lr: 1e-4 }],
] as const) {
  test(`resume is exact: ${method}`, async () => {
    const cfg = config(overrides);
    const whole = await run(cfg, workDir(`whole-${method}`));
    assert.equal(whole.result.status, 'completed');
    assert.equal(whole.losses.length, cfg.max_iters);
    assert.ok(whole.losses.every(Number.isFinite));

    const stopAt = Math.floor(cfg.max_iters! / 2) - 1;
    const dir = workDir(`split-${method}`);
    const first = await run(cfg, dir, { stopAt });
    assert.equal(first.result.status, 'interrupted');
    assert.equal(first.result.iter, stopAt);
    assert.equal(path.basename(first.result.checkpoint!), `iter_${stopAt}`);

    const second = await run(cfg, dir, { resume: 'auto' });
    assert.equal(second.result.status, 'completed');
    // Same float32 computations in the same order: the losses are equal, not merely close.
    assert.deepEqual([...first.losses, ...second.losses], whole.losses);

    // logs.jsonl holds one line per iteration across both processes' runs.
    const logged = fs.readFileSync(path.join(dir, 'logs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(logged.map((l) => l.iter), Array.from({ length: cfg.max_iters! }, (_, i) => i + 1));
    assert.deepEqual(logged.map((l) => l.loss), whole.losses);
  });
}

// On the GPU, atomics in some backward kernels may sum in another order: agree to float32 noise.
const CUDA_LOSS_RTOL = 1e-5;
const cuda = probeBackends().cuda;

test('resume agrees on CUDA', { skip: cuda.available ? false : `no CUDA backend here (${cuda.backend.reason ?? 'unavailable'})` }, async () => {
  const cfg = config({ device: 'cuda', dtype: 'float32', max_iters: 6, accumulative_counts: 1 });
  const whole = await run(cfg, workDir('cuda-whole'));
  const dir = workDir('cuda-split');
  const first = await run(cfg, dir, { stopAt: 3 });
  const second = await run(cfg, dir, { resume: 'auto' });
  const split = [...first.losses, ...second.losses];
  assert.equal(split.length, whole.losses.length);
  split.forEach((l, i) => assert.ok(Math.abs(l - whole.losses[i]!) <= CUDA_LOSS_RTOL * Math.abs(whole.losses[i]!), `iteration ${i + 1}: ${l} vs ${whole.losses[i]}`));
  assert.ok(whole.losses.every(Number.isFinite));
});

test("a fresh run leaves an earlier run's checkpoints alone; resuming an older checkpoint rewinds the log", async () => {
  const cfg = config({ max_iters: 4, accumulative_counts: 1, save_steps: 2 });
  const dir = workDir('rerun');
  const original = await run(cfg, dir);
  const logs = () => fs.readFileSync(path.join(dir, 'logs.jsonl'), 'utf8');
  const before = logs();
  await assert.rejects(run(cfg, dir), /holds checkpoints of an earlier run \(iter_2, iter_4\)/);
  assert.equal(logs(), before);

  const resumed = await run(cfg, dir, { resume: path.join(dir, 'iter_2') });
  assert.deepEqual(resumed.losses, original.losses.slice(2));
  const lines = logs().trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.iter), [1, 2, 3, 4]);
  assert.deepEqual(lines.map((l) => l.loss), original.losses);
  const aside = fs.readdirSync(dir).filter((f) => /^logs\.after-2-.*\.jsonl$/.test(f));
  assert.equal(aside.length, 1);
  assert.equal(fs.readFileSync(path.join(dir, aside[0]!), 'utf8'), before);
});

test('QLoRA trains and resumes exactly', async () => {
  const cfg = config({ quantization: { load_in_4bit: true }, max_iters: 4, accumulative_counts: 1 });
  const whole = await run(cfg, workDir('qlora-whole'));
  const dir = workDir('qlora-split');
  const first = await run(cfg, dir, { stopAt: 2 });
  const second = await run(cfg, dir, { resume: path.join(dir, 'iter_2') });
  assert.deepEqual([...first.losses, ...second.losses], whole.losses);
});

test('a NaN or infinite loss stops the run with a message naming the iteration', async () => {
  // lr 1e30: the first AdamW step moves every LoRA weight by ~1e30, so iteration 2 overflows.
  const dir = workDir('nan');
  await assert.rejects(
    run(config({ lr: 1e30, warmup_ratio: 0, max_iters: 4, accumulative_counts: 1 }), dir),
    (err: unknown) => {
      assert.ok(err instanceof XtunerError);
      assert.match(err.message, /^loss is (NaN|Infinity|-Infinity) at iteration 2 \(epoch 1, batch 2 of \d+\); training stopped$/);
      assert.match(err.hint ?? '', /no checkpoint was saved yet/);
      return true;
    },
  );
  assert.ok(!fs.readdirSync(dir).some((f) => f.startsWith('iter_')));
  assert.ok(!fs.existsSync(path.join(dir, LOCK_FILE)), 'the lock is released');
});

test('a work folder in use by a live process is refused before anything is written', async () => {
  const dir = workDir('locked');
  fs.mkdirSync(dir, { recursive: true });
  const lock = JSON.stringify({ pid: process.ppid, host: os.hostname(), started: 'now' });
  fs.writeFileSync(path.join(dir, LOCK_FILE), lock);
  await assert.rejects(run(config(), dir), /work folder .*locked is in use by another xtuner train \(pid \d+/);
  assert.equal(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8'), lock);
  assert.deepEqual(fs.readdirSync(dir), [LOCK_FILE]);
});

test('resuming from a corrupt checkpoint is one clear error', async () => {
  const cfg = config({ max_iters: 2, accumulative_counts: 1, save_steps: 1 });
  const dir = workDir('corrupt');
  await run(cfg, dir);
  const file = path.join(dir, 'iter_2', 'optimizer.safetensors');
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 3]! ^= 0x55;
  fs.writeFileSync(file, bytes);
  await assert.rejects(run(cfg, dir, { resume: 'auto' }), (err: unknown) => {
    assert.ok(err instanceof XtunerError);
    assert.equal(err.message, `checkpoint ${path.join(dir, 'iter_2')} is not usable: optimizer.safetensors does not match its SHA-256 (the file was damaged)`);
    return true;
  });
  await assert.rejects(run(cfg, workDir('no-ckpt'), { resume: 'auto' }), /--resume: no checkpoint to resume in/);
});
