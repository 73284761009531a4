// TrainStep (src/train/step.ts) on CUDA: iterations replayed from CUDA graphs give the same losses,
// grad norms and weights, bit for bit, as the same iterations queued op by op, over a run that
// accumulates gradients (two kinds of iteration) and changes its packing (a second cuSeqlens
// capacity): each kind runs eagerly once, is captured the second time and replayed after, the
// graphs sharing one memory pool. A replayed iteration is one graph launch, a few small uploads
// (the batch, the dropout seed, AdamW's step state), no cuBLAS call from the host and one read-back.
// Bit-for-bit holds because the LoRA path's kernels have no atomics whose order could vary.

import assert from 'node:assert/strict';
import test from 'node:test';
import { CachingAllocator } from '../../src/backends/cuda/allocator.ts';
import { CudaOutOfMemoryError, cudaBackend } from '../../src/backends/cuda/index.ts';
import { XtunerError } from '../../src/errors.ts';
import { CausalLM } from '../../src/models/causal-lm.ts';
import { createModel } from '../../src/models/index.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { injectLora } from '../../src/peft/lora.ts';
import { DropoutStream, Rng, Tensor, memoryStats, tensor } from '../../src/tensor/index.ts';
import { TrainStep, type StepBatch } from '../../src/train/step.ts';
import { SKIP } from './helpers.ts';

// head dim 32: the tensor-core attention
const SHAPE = { model_type: 'llama', vocab_size: 320, hidden_size: 128, intermediate_size: 192, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };
const T = 64;
const ACC = 2; // an optimizer step every second iteration

function setup(graphs: boolean, notice?: (line: string) => void) {
  const model = createModel(SHAPE, { device: 'cuda', dtype: 'bfloat16', seed: 0 });
  const rng = new Rng(1);
  const dropout = new DropoutStream(rng);
  injectLora(model, { r: 8, loraAlpha: 16, loraDropout: 0.1, targetModules: null }, rng, dropout);
  model.train();
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  const optimizer = new AdamW(trainable, { lr: 1e-2 });
  return { trainable, optimizer, step: new TrainStep({ model, optimizer, maxNorm: 1, dropout, graphs, ...(notice ? { notice } : {}) }) };
}

/** One row of T tokens packing `samples` samples, the first token of each unsupervised. */
function batchOf(i: number, samples: number): StepBatch {
  const rng = new Rng(100 + i);
  const ids = Array.from({ length: T }, () => rng.int(SHAPE.vocab_size));
  const cu = Array.from({ length: samples + 1 }, (_, k) => Math.round((k * T) / samples));
  const labels = ids.map((id, t) => (cu.includes(t) ? -100 : id));
  const positions = ids.map((_, t) => t - cu[cu.findLastIndex((c) => c <= t)]!);
  return { inputIds: [ids], labels: [labels], positionIds: [positions], cuSeqlens: cu };
}

test('TrainStep: graph replays equal eager iterations bit for bit, one launch per replayed iteration', { skip: SKIP }, () => {
  const be = cudaBackend();
  const live0 = memoryStats().liveTensors;
  const eager = setup(false);
  const iters = 12;
  // 3 samples a row (cuSeqlens capacity 16), then 20 (capacity 32)
  const batches = Array.from({ length: iters }, (_, i) => batchOf(i, i < 6 ? 3 : 20));
  const kinds = batches.map((_, i) => ({ lossFactor: ACC, optimizerStep: (i + 1) % ACC === 0, lr: 1e-2 / (1 + i) }));
  // one run after the other, as a trainer runs (test/cuda/embedding-on-host.test.ts interleaves two)
  const want = batches.map((b, i) => eager.step.run(b, kinds[i]!));
  const live1 = memoryStats().liveTensors;
  const graphed = setup(true);
  assert.equal(graphed.step.graphs, true);
  for (let i = 0; i < iters; i++) {
    const before = { ...graphed.step.counts };
    be.takeCounters();
    const got = graphed.step.run(batches[i]!, kinds[i]!);
    const traffic = be.takeCounters();
    assert.deepEqual(got, want[i], `iteration ${i}: loss and grad norm`);
    if (graphed.step.counts.replayed > before.replayed) {
      assert.equal(traffic.graphLaunches, 1, `iteration ${i}: one graph launch`);
      assert.equal(traffic.gemms, 0, `iteration ${i}: no GEMM queued from the host`);
      assert.ok(traffic.launches <= 4, `iteration ${i}: only the read's own kernels, got ${traffic.launches}`);
      assert.ok(traffic.htod <= 5, `iteration ${i}: the batch, the dropout seed and AdamW's state uploaded, got ${traffic.htod} uploads`);
      assert.equal(traffic.dtoh, 1, `iteration ${i}: one read-back`);
    }
  }
  // per kind (capacity x accumulate/step): one eager run, one capture, replays after
  assert.deepEqual(graphed.step.counts, { eager: 4, captured: 4, replayed: 4 });
  for (const [k, [name, p]] of graphed.trainable.entries()) {
    assert.deepEqual(p.toHostArray(), eager.trainable[k]![1].toHostArray(), `${name} after ${iters} iterations`);
  }
  const pooled = be.memoryStats().graphPoolBytes;
  assert.ok(pooled > 0);
  graphed.step.dispose();
  assert.ok(be.memoryStats().graphPoolBytes < pooled, 'the graphs\' pool goes back when they are disposed');
  // nothing left behind by eager, captured or replayed iterations: the graphed run holds what the
  // eager run holds, plus its gradients (kept for the whole run)
  assert.equal(memoryStats().liveTensors - live1, live1 - live0 + graphed.trainable.length, 'live tensors');
  for (const r of [eager, graphed]) r.optimizer.dispose();
});

test('TrainStep: a step that copies from the host inside its device half fails its capture with a clear error, and the device stays usable', { skip: SKIP }, () => {
  const { step, optimizer } = setup(true);
  const batch = batchOf(0, 3);
  const kind = { lossFactor: 1, optimizerStep: true, lr: 1e-2 };
  step.run(batch, kind); // eager: the warm-up
  // the device half now uploads a tensor (as a buggy op would): the capture must refuse it
  const original = CausalLM.prototype.forwardPrepared;
  CausalLM.prototype.forwardPrepared = function (this: CausalLM, p) {
    tensor([1, 2, 3], [3], { device: 'cuda' }).dispose();
    return original.call(this, p);
  };
  try {
    assert.throws(() => step.run(batch, kind), (e: unknown) => {
      assert.ok(e instanceof XtunerError);
      assert.match(e.message, /capturing the training step as a CUDA graph \(.*\) failed: .*host memory to the device during CUDA graph capture/);
      assert.match(e.hint ?? '', /XTUNER_CUDA_GRAPHS=0/);
      return true;
    });
  } finally {
    CausalLM.prototype.forwardPrepared = original;
  }
  // no capture left open: plain work runs and reads back
  assert.deepEqual([...tensor([4, 5], [2], { device: 'cuda' }).toFloat32Array()], [4, 5]);
  step.dispose();
  optimizer.dispose();
});

test('TrainStep: a capture that runs out of GPU memory leaves the run op by op from that iteration on, bit for bit as an eager run', { skip: SKIP }, () => {
  const be = cudaBackend();
  const iters = 5;
  const batches = Array.from({ length: iters }, (_, i) => batchOf(i, 3));
  // an optimizer step every iteration: the first (op by op) makes the gradients and steps with them
  const kinds = batches.map(() => ({ lossFactor: 1, optimizerStep: true, lr: 1e-2 }));
  const eager = setup(false);
  const want = batches.map((b, i) => eager.step.run(b, kinds[i]!));
  const notices: string[] = [];
  const graphed = setup(true, (l) => notices.push(l));
  // the device fills up halfway through a capture (as a card does when the kept gradients tip the
  // step's peak over): the allocator's own error, after the capture queued dropout and LoRA work
  const alloc = CachingAllocator.prototype.alloc;
  let inCapture = 0;
  CachingAllocator.prototype.alloc = function (this: CachingAllocator, bytes, what) {
    if ((this as unknown as { capturing: unknown }).capturing && ++inCapture > 60) throw new CudaOutOfMemoryError(`no room for ${what()}`, {});
    return alloc.call(this, bytes, what);
  };
  try {
    // iteration 1 is the first capture: it fails, and reruns op by op
    for (let i = 0; i < iters; i++) assert.deepEqual(graphed.step.run(batches[i]!, kinds[i]!), want[i], `iteration ${i}`);
  } finally {
    CachingAllocator.prototype.alloc = alloc;
  }
  assert.equal(graphed.step.graphs, false);
  assert.deepEqual(graphed.step.counts, { eager: iters, captured: 0, replayed: 0 });
  assert.equal(notices.length, 1);
  assert.match(notices[0]!, /capturing the training step ran out of GPU memory \(no room for .*\); training goes on op by op/);
  for (const [k, [name, p]] of graphed.trainable.entries()) assert.deepEqual(p.toHostArray(), eager.trainable[k]![1].toHostArray(), name);
  assert.equal(be.memoryStats().graphPoolBytes, 0, 'the failed capture\'s pool went back');
  for (const r of [eager, graphed]) {
    r.step.dispose();
    r.optimizer.dispose();
  }
});

/**
 * Allocations inside the loss's backward() are counted while `probe.armed`, and the `probe.failAt`-th
 * of them runs out of GPU memory (the allocator's own error). `restore()` undoes the patches.
 */
function oomInBackward() {
  const alloc = CachingAllocator.prototype.alloc;
  const backward = Tensor.prototype.backward;
  const probe = { armed: false, count: 0, failAt: Infinity, restore: () => {} };
  let depth = 0; // checkpointed pieces call backward() inside the backward
  CachingAllocator.prototype.alloc = function (this: CachingAllocator, bytes, what) {
    if (depth > 0 && probe.armed && ++probe.count === probe.failAt) throw new CudaOutOfMemoryError(`no room for ${what()}`, {});
    return alloc.call(this, bytes, what);
  };
  Tensor.prototype.backward = function (this: Tensor, ...args) {
    depth++;
    try {
      return backward.apply(this, args);
    } finally {
      depth--;
    }
  };
  probe.restore = () => {
    CachingAllocator.prototype.alloc = alloc;
    Tensor.prototype.backward = backward;
  };
  return probe;
}

test('TrainStep: a new kind of iteration that runs out of GPU memory beside the graphs drops them and reruns, bit for bit as an eager run', { skip: SKIP }, () => {
  const be = cudaBackend();
  const iters = 6;
  // kind A (3 samples a row) eager, captured, replayed; then kind B (another cuSeqlens capacity)
  const batches = Array.from({ length: iters }, (_, i) => batchOf(i, i < 3 ? 3 : 20));
  const kinds = batches.map(() => ({ lossFactor: 1, optimizerStep: true, lr: 1e-2 }));
  const FIRST_B = 3;
  const probe = oomInBackward();
  const runAll = (r: ReturnType<typeof setup>) =>
    batches.map((b, i) => {
      probe.armed = i === FIRST_B;
      return r.step.run(b, kinds[i]!);
    });
  const notices: string[] = [];
  let eager: ReturnType<typeof setup>, graphed: ReturnType<typeof setup>;
  let want: unknown[], got: unknown[];
  try {
    eager = setup(false);
    want = runAll(eager);
    assert.ok(probe.count > 10, `allocations in the backward: ${probe.count}`);
    // halfway through B's first backward (counted in the eager run): some gradients hold its part
    probe.failAt = Math.floor(probe.count / 2);
    probe.count = 0;
    graphed = setup(true, (l) => notices.push(l));
    got = runAll(graphed);
  } finally {
    probe.restore();
  }
  assert.deepEqual(got, want);
  assert.equal(graphed.step.graphs, false);
  // A: eager, captured, replayed; B: eager (failed, rerun), then op by op
  assert.deepEqual(graphed.step.counts, { eager: 4, captured: 1, replayed: 1 });
  assert.equal(notices.length, 1);
  assert.match(notices[0]!, /a new kind of iteration \(.*\) ran out of GPU memory beside the graphs \(no room for .*\); training goes on op by op/);
  for (const [k, [name, p]] of graphed.trainable.entries()) assert.deepEqual(p.toHostArray(), eager.trainable[k]![1].toHostArray(), name);
  assert.equal(be.memoryStats().graphPoolBytes, 0, 'the graphs\' pool went back');
  for (const r of [eager, graphed]) {
    r.step.dispose();
    r.optimizer.dispose();
  }
});

test('TrainStep: out of memory in a new kind of iteration while gradients accumulate ends the run with the allocator\'s error', { skip: SKIP }, () => {
  const { step, optimizer } = setup(true);
  // A accumulate, A step (eager), A accumulate, A step (captured); then B accumulate (eager), and
  // B's optimizer-step iteration fails in its backward, B's gradients half summed
  const plan = [3, 3, 3, 3, 20, 20];
  const probe = oomInBackward();
  probe.failAt = 5;
  try {
    for (const [i, samples] of plan.entries()) {
      probe.armed = i === plan.length - 1;
      const run = () => step.run(batchOf(i, samples), { lossFactor: ACC, optimizerStep: i % ACC === 1, lr: 1e-2 });
      if (probe.armed) assert.throws(run, (e: unknown) => e instanceof CudaOutOfMemoryError && /no room for/.test(e.message));
      else run();
    }
  } finally {
    probe.restore();
  }
  assert.equal(probe.count, probe.failAt, 'it failed in the backward');
  assert.equal(step.graphs, true);
  step.dispose();
  optimizer.dispose();
});

test('TrainStep: a new kind of iteration with less free memory beside the graphs than their pool holds drops them first, bit for bit as an eager run', { skip: SKIP }, () => {
  const be = cudaBackend();
  // accumulation: A accumulate, A step (eager), A accumulate, A step (captured), then B (another
  // cuSeqlens capacity) accumulate and step: B's first iteration finds a card too tight beside the pool
  const plan = [3, 3, 3, 3, 20, 20, 20, 20];
  const batches = plan.map((samples, i) => batchOf(i, samples));
  const kinds = plan.map((_, i) => ({ lossFactor: ACC, optimizerStep: i % ACC === 1, lr: 1e-2 }));
  const eager = setup(false);
  const want = batches.map((b, i) => eager.step.run(b, kinds[i]!));
  const notices: string[] = [];
  const graphed = setup(true, (l) => notices.push(l));
  const available = be.availableBytes;
  const got: unknown[] = [];
  try {
    for (let i = 0; i < plan.length; i++) {
      if (i === 4) be.availableBytes = () => 1024; // as an 8 GB card holding a 7B step
      got.push(graphed.step.run(batches[i]!, kinds[i]!));
    }
  } finally {
    be.availableBytes = available;
  }
  assert.deepEqual(got, want);
  assert.equal(graphed.step.graphs, false);
  assert.deepEqual(graphed.step.counts, { eager: 6, captured: 2, replayed: 0 });
  assert.equal(notices.length, 1);
  assert.match(notices[0]!, /a new kind of iteration \(.*\) would not fit beside the graphs' memory \(1\.0 KiB free, the graphs' pool holds .*\); training goes on op by op/);
  for (const [k, [name, p]] of graphed.trainable.entries()) assert.deepEqual(p.toHostArray(), eager.trainable[k]![1].toHostArray(), name);
  assert.equal(be.memoryStats().graphPoolBytes, 0);
  for (const r of [eager, graphed]) {
    r.step.dispose();
    r.optimizer.dispose();
  }
});
