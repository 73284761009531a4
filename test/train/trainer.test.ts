// The trainer on a fixture-sized model (1-layer Llama, the tiny-assistant tokenizer, 40 samples):
// XTuner's iterations (one batch each: the run, the schedule, the hooks count them; the optimizer
// steps every accumulative_counts, averaging its batches), exact resume (LoRA with dropout,
// mid-accumulation, across epochs, float32 and bf16; full fine-tuning), an interrupt that saves,
// NaN/inf loss, a locked work folder, a corrupt checkpoint. On CUDA: test/cuda/trainer.test.ts.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DataPosition } from '../../src/data/index.ts';
import { XtunerError } from '../../src/errors.ts';
import { hostToFloat32 } from '../../src/io/safetensors.ts';
import { noGrad, tidy } from '../../src/tensor/index.ts';
import { loadCheckpoint } from '../../src/train/checkpoint.ts';
import { setupRun } from '../../src/train/setup.ts';
import { train } from '../../src/train/trainer.ts';
import { LOCK_FILE } from '../../src/train/work-dir.ts';
import { trainerFixture } from './fixture.ts';

const { config, workDir, run } = trainerFixture('xtuner-trainer-');

/** The records of a work folder's logs.jsonl. */
function logs(dir: string): Array<{ iter: number; epoch: number; loss: number; lr: number; grad_norm: number | null }> {
  return fs.readFileSync(path.join(dir, 'logs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

/** 1-based iterations after which the optimizer steps: every `acc`-th and the last. */
function stepIters(maxIters: number, acc: number): number[] {
  return Array.from({ length: maxIters }, (_, i) => i + 1).filter((i) => i % acc === 0 || i === maxIters);
}

for (const [method, overrides, stopAt] of [
  // 8 iterations, a step after 3, 6 and 8 (a short last group); stopped at 4, between two steps.
  ['LoRA with dropout, mid-accumulation, across epochs', { accumulative_counts: 3 }, 4],
  // the bf16 model's LoRA branch is one fused op that redraws its dropout mask in the backward
  ['LoRA with dropout on a bfloat16 model', { accumulative_counts: 3, dtype: 'bfloat16' }, 4],
  ['full fine-tuning', { lora: null, max_iters: 4, accumulative_counts: 1, lr: 1e-4 }, 1],
] as const) {
  test(`resume is exact: ${method}`, async () => {
    const cfg = config(overrides);
    const whole = await run(cfg, workDir(`whole-${method}`));
    assert.equal(whole.result.status, 'completed');
    assert.equal(whole.losses.length, cfg.max_iters);
    assert.ok(whole.losses.every(Number.isFinite));

    const dir = workDir(`split-${method}`);
    const first = await run(cfg, dir, { stopAt });
    assert.equal(first.result.status, 'interrupted');
    assert.equal(first.result.iter, stopAt);
    assert.equal(path.basename(first.result.checkpoint!), `iter_${stopAt}`);
    const pending = stopAt % cfg.accumulative_counts !== 0;
    assert.equal(fs.existsSync(path.join(dir, `iter_${stopAt}`, 'grads.safetensors')), pending, 'accumulated gradients saved when between steps');

    const second = await run(cfg, dir, { resume: 'auto' });
    assert.equal(second.result.status, 'completed');
    // Same computations in the same order: the losses are equal, not merely close.
    assert.deepEqual([...first.losses, ...second.losses], whole.losses);

    // logs.jsonl holds one line per iteration across both processes' runs, with a grad norm
    // where the optimizer stepped.
    const logged = logs(dir);
    assert.deepEqual(logged.map((l) => l.iter), Array.from({ length: cfg.max_iters! }, (_, i) => i + 1));
    assert.deepEqual(logged.map((l) => l.loss), whole.losses);
    assert.deepEqual(logged.filter((l) => l.grad_norm !== null).map((l) => l.iter), stepIters(cfg.max_iters!, cfg.accumulative_counts));
    assert.deepEqual(logged.map((l) => l.grad_norm), logs(workDir(`whole-${method}`)).map((l) => l.grad_norm));
  });
}

test('an epoch is its batches: the run, the schedule and the optimizer steps count them as XTuner does', async () => {
  const lr = 1e-3;
  const cfg = config({ max_iters: undefined, max_epochs: 2, accumulative_counts: 3, warmup_ratio: 0.2, lr });
  const dir = workDir('epochs');
  const { result } = await run(cfg, dir);
  const logged = logs(dir);
  const batches = logged.filter((l) => l.epoch === 1).length; // len(dataloader)
  assert.ok(batches >= 4, `${batches} batches per epoch`);
  const total = 2 * batches; // max_epochs * len(dataloader)
  assert.equal(result.maxIters, total);
  assert.deepEqual(logged.map((l) => l.iter), Array.from({ length: total }, (_, i) => i + 1));
  assert.ok(logged.slice(batches).every((l) => l.epoch === 2));

  // LinearLR from lr * 1e-5 over the first trunc(0.2 * 2 epochs) iterations, then CosineAnnealingLR
  // to 0 at the end, stepped every iteration (mmengine, by_epoch=False after convert_to_iter_based).
  const warmup = Math.trunc(0.2 * 2 * batches);
  const expected = (i: number): number =>
    i < warmup ? lr * (1e-5 + ((1 - 1e-5) * i) / (warmup - 1)) : (lr * (1 + Math.cos((Math.PI * (i - warmup)) / (total - warmup)))) / 2;
  logged.forEach((l, i) => assert.ok(Math.abs(l.lr - expected(i)) <= 1e-12 * lr, `iteration ${l.iter}: lr ${l.lr}, expected ${expected(i)}`));

  const steps = stepIters(total, 3);
  assert.deepEqual(logged.filter((l) => l.grad_norm !== null).map((l) => l.iter), steps);
  const state = loadCheckpoint(path.join(dir, `iter_${total}`)).state as { optimizer: { steps: Record<string, number> } };
  assert.ok(Object.values(state.optimizer.steps).every((n) => n === steps.length), JSON.stringify(state.optimizer.steps));
});

// The logged norm is of float32 gradients summed in another order than here (float64).
const GRAD_NORM_RTOL = 1e-4;

test('a step averages the gradients of its batches; a short last group averages its own', async () => {
  // 4 iterations, accumulative_counts 3: a step after 3 (mean of 3 batches), one after 4 (1 batch).
  const cfg = config({ max_iters: 4, accumulative_counts: 3, save_steps: 3, lora: { r: 4, lora_alpha: 8, lora_dropout: 0 } });
  const dir = workDir('tail');
  await run(cfg, dir);
  const logged = logs(dir);

  // The same model, data and initial adapters, with gradients taken here batch by batch.
  const setup = await setupRun(cfg, cfg.seed, 'cpu', () => {});
  const loader = setup.data.loader;
  const gradOf = (pos: DataPosition): Float64Array[] => {
    const b = loader.batchAt(pos);
    tidy(() => {
      const shaped = <T>(data: T) => ({ data, shape: b.shape });
      setup.model.forward(shaped(b.inputIds), { labels: shaped(b.labels), positionIds: shaped(b.positionIds), cuSeqlens: b.cuSeqlens }).loss!.backward();
    });
    return setup.trainable.map(([, p]) => {
      const g = Float64Array.from(p.grad!.toFloat32Array());
      p.grad = null;
      return g;
    });
  };
  const norm = (gs: Float64Array[], divisor: number): number => Math.sqrt(gs.reduce((s, g) => s + g.reduce((t, x) => t + (x / divisor) ** 2, 0), 0));
  const positions: DataPosition[] = [{ epoch: 0, step: 0 }];
  for (let i = 1; i < 4; i++) positions.push(loader.next(positions[i - 1]!));

  const first = positions.slice(0, 3).map(gradOf);
  const sum = first[0]!.map((g, k) => g.map((x, j) => x + first[1]![k]![j]! + first[2]![k]![j]!));
  const want3 = norm(sum, 3);
  assert.ok(Math.abs(logged[2]!.grad_norm! - want3) <= GRAD_NORM_RTOL * want3, `step 1: ${logged[2]!.grad_norm} vs ${want3}`);

  // After the first step (weights of iter_3), the last batch alone, undivided.
  const ck = loadCheckpoint(path.join(dir, 'iter_3'));
  noGrad(() => setup.trainable.forEach(([name, p]) => p.assign(hostToFloat32(ck.trainable.get(name)!))));
  const want4 = norm(gradOf(positions[3]!), 1);
  assert.ok(Math.abs(logged[3]!.grad_norm! - want4) <= GRAD_NORM_RTOL * want4, `step 2: ${logged[3]!.grad_norm} vs ${want4}`);
  assert.deepEqual(logged.map((l) => l.grad_norm === null), [true, true, false, false]);
});

// The checkpoint keeps the LoRA dropout stream (its generator, the step's base seed and call count):
// with it the resume above is exact; a checkpoint without it resumes with other masks.
test('resume restores the LoRA dropout stream from state.json', async () => {
  // a large lr, so that the adapters (B starts at zero) move the loss by more than float32 noise
  const cfg = config({ max_iters: 4, accumulative_counts: 1, lr: 0.05 });
  const whole = await run(cfg, workDir('stream-whole'));
  const dir = workDir('stream-split');
  const first = await run(cfg, dir, { stopAt: 2 });
  const statePath = path.join(dir, 'iter_2', 'state.json');
  const file = JSON.parse(fs.readFileSync(statePath, 'utf8'));
  const stream = file.state.loraDropout;
  assert.deepEqual(Object.keys(stream).sort(), ['calls', 'rng', 'seed']);
  assert.ok(stream.calls > 0, 'the LoRA layers called dropout in the last iteration');
  const kept = await run(cfg, dir, { resume: path.join(dir, 'iter_2') });
  assert.deepEqual([...first.losses, ...kept.losses], whole.losses);
  // the same checkpoint without the stream: the run goes on, with other masks
  fs.writeFileSync(statePath, JSON.stringify({ ...file, state: { ...file.state, loraDropout: null } }));
  const lost = await run(cfg, dir, { resume: path.join(dir, 'iter_2') });
  assert.notDeepEqual(lost.losses, kept.losses);
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

test('a warm-up of one iteration is warned about: the learning rate would stay at 1e-5 x lr', async () => {
  const text: string[] = [];
  const out = { write: (s: string) => (text.push(s), true), isTTY: false };
  const dir = workDir('warmup-one');
  // max_iters 4, warmup_ratio 0.3: trunc(1.2) = 1 warm-up iteration
  const cfg = config({ max_iters: 4, warmup_ratio: 0.3 });
  await train({ config: cfg, workDir: dir, out });
  assert.match(text.join(''), /warning: warmup_ratio 0\.3 gives a warm-up of 1 iteration, which leaves the learning rate at 1e-5 x lr/);
  const lrs = logs(dir).map((r) => r.lr);
  assert.equal(lrs.length, 4);
  for (const lr of lrs) assert.ok(lr <= 1e-5 * cfg.lr * (1 + 1e-9), `lr ${lr}`);
});
