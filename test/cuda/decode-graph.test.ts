// Decoding through a CUDA graph per KV cache (src/generate/decode-graph.ts): the first one-token
// step runs op by op, the second is captured and launched, every later one replays it at the next
// position. The logits of every step equal those of decoding op by op (XTUNER_CUDA_GRAPHS=0) bit
// for bit: float32 and bf16, the embedding table in host memory, LoRA adapters (over bf16 and over
// NF4 weights), NF4 weights (nf4Matvec), a prompt of one token and a longer one, and a second cache
// after the first. A capture that runs out of memory leaves the generation op by op, with the same
// logits. A cache kept between generations (a conversation) keeps its graph.

import assert from 'node:assert/strict';
import test from 'node:test';
import { CachingAllocator } from '../../src/backends/cuda/allocator.ts';
import { CudaOutOfMemoryError, cudaBackend } from '../../src/backends/cuda/index.ts';
import { DecodingState } from '../../src/generate/decode.ts';
import { PreallocatedKvCache } from '../../src/generate/kv-cache.ts';
import { argmax } from '../../src/generate/sampling.ts';
import { createModel, type CreateOptions } from '../../src/models/index.ts';
import { injectLora } from '../../src/peft/lora.ts';
import { DropoutStream, Rng } from '../../src/tensor/index.ts';
import type { CausalLM } from '../../src/models/causal-lm.ts';
import { SKIP } from './helpers.ts';

const SHAPE = { model_type: 'qwen2', vocab_size: 300, hidden_size: 128, intermediate_size: 192, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };
const STEPS = 9;

/** Each step's logits, greedy: the prompt, then STEPS tokens one at a time; and the graph's counts. */
function decode(model: CausalLM, prompt: number[], graphs: boolean): { logits: Float32Array[]; counts: unknown } {
  const before = process.env['XTUNER_CUDA_GRAPHS'];
  if (!graphs) process.env['XTUNER_CUDA_GRAPHS'] = '0';
  try {
    const cache = model.createKvCache(prompt.length + STEPS) as PreallocatedKvCache;
    const logits = [model.nextLogits(Int32Array.from(prompt), cache)];
    for (let i = 0; i < STEPS; i++) logits.push(model.nextLogits(Int32Array.of(argmax(logits.at(-1)!)), cache));
    const counts = cache.decodeGraph ? { ...cache.decodeGraph.counts } : null;
    cache.dispose();
    return { logits, counts };
  } finally {
    if (before === undefined) delete process.env['XTUNER_CUDA_GRAPHS'];
    else process.env['XTUNER_CUDA_GRAPHS'] = before;
  }
}

function check(what: string, model: CausalLM, prompt: number[]): void {
  const eager = decode(model, prompt, false);
  assert.equal(eager.counts, null, `${what}: XTUNER_CUDA_GRAPHS=0 makes no graph`);
  for (let run = 0; run < 2; run++) {
    const graphed = decode(model, prompt, true);
    // a one-token prompt is the first one-token step
    const replayed = STEPS - (prompt.length === 1 ? 1 : 2);
    assert.deepEqual(graphed.counts, { eager: 1, captured: 1, replayed }, `${what}: op by op once, captured once, replayed after`);
    graphed.logits.forEach((l, i) => assert.deepEqual(l, eager.logits[i], `${what}, cache ${run + 1}: the logits of step ${i}`));
  }
}

const CASES: [string, CreateOptions][] = [
  ['float32', { dtype: 'float32' }],
  ['bfloat16', { dtype: 'bfloat16' }],
  ['bfloat16, the embedding table in host memory', { dtype: 'bfloat16', embeddingOnHost: true }],
  ['bfloat16, NF4 weights', { dtype: 'bfloat16', quantization: {} }],
];

for (const [what, opts] of CASES) {
  test(`decoding through a CUDA graph gives the logits of decoding op by op: ${what}`, { skip: SKIP }, () => {
    const model = createModel(SHAPE, { device: 'cuda', seed: 5, ...opts });
    model.eval();
    check(what, model, [7, 201, 33, 4, 150]);
    check(`${what}, a one-token prompt`, model, [42]);
  });
}

test('decoding through a CUDA graph with LoRA adapters gives the logits of decoding op by op', { skip: SKIP }, () => {
  // over bf16 weights the adapters' bf16 copies are kept; over NF4 (QLoRA) they are cast per call, inside the graph
  for (const [what, opts] of [['LoRA', {}], ['LoRA over NF4 weights', { quantization: {} }]] as const) {
    const model = createModel(SHAPE, { device: 'cuda', dtype: 'bfloat16', seed: 6, ...opts });
    const rng = new Rng(2);
    injectLora(model, { r: 8, loraAlpha: 16, loraDropout: 0.1, targetModules: null }, rng, new DropoutStream(rng));
    // B starts at zero: give the adapters something to add
    for (const [name, p] of model.namedParameters()) if (name.includes('lora_B')) p.assign(Float32Array.from({ length: p.size }, () => rng.normal() * 0.05));
    model.eval();
    check(what, model, [3, 99, 250]);
  }
});

test('a decoding capture that runs out of GPU memory leaves the generation op by op, with the same logits', { skip: SKIP }, () => {
  const model = createModel(SHAPE, { device: 'cuda', dtype: 'bfloat16', seed: 7 });
  model.eval();
  const prompt = [11, 12, 13];
  const want = decode(model, prompt, false).logits;
  // the device fills up partway through the capture (the allocator's own error)
  const alloc = CachingAllocator.prototype.alloc;
  let inCapture = 0;
  CachingAllocator.prototype.alloc = function (this: CachingAllocator, bytes, what) {
    if ((this as unknown as { capturing: unknown }).capturing && ++inCapture > 5) throw new CudaOutOfMemoryError(`no room for ${what()}`, {});
    return alloc.call(this, bytes, what);
  };
  let got: ReturnType<typeof decode>;
  try {
    got = decode(model, prompt, true);
  } finally {
    CachingAllocator.prototype.alloc = alloc;
  }
  assert.ok(inCapture > 5, 'the capture ran out');
  // once op by op before the capture, once in its place; the rest without the graph
  assert.deepEqual(got.counts, { eager: 2, captured: 0, replayed: 0 });
  got.logits.forEach((l, i) => assert.deepEqual(l, want[i], `the logits of step ${i}`));
  assert.equal(cudaBackend().memoryStats().graphPoolBytes, 0, "the failed capture's pool went back");
});

test('a KV cache kept from one generation to the next keeps its decoding graph, with the answers of fresh caches', { skip: SKIP }, () => {
  const model = createModel(SHAPE, { device: 'cuda', dtype: 'bfloat16', seed: 8 });
  model.eval();
  const first = [5, 60, 7, 250, 31];
  const opts = { maxNewTokens: 6, stopIds: [] };
  const state = new DecodingState();
  const a = model.generate(first, { ...opts, state });
  const second = [...first, ...a, 99, 100]; // the conversation goes on
  const b = model.generate(second, { ...opts, state });
  const graph = (state.cache as PreallocatedKvCache).decodeGraph!;
  // each generation: a prompt step, then 5 one-token steps; the first two of them op by op and captured
  assert.deepEqual(graph.counts, { eager: 1, captured: 1, replayed: 2 * (opts.maxNewTokens - 1) - 2 }, 'captured once, for both');
  state.dispose();
  assert.deepEqual(a, model.generate(first, opts));
  assert.deepEqual(b, model.generate(second, opts));
});

test('a kept KV cache too small for the next generation moves into a larger one with a graph of its own, or, where both do not fit, is made again', { skip: SKIP }, () => {
  const model = createModel(SHAPE, { device: 'cuda', dtype: 'bfloat16', seed: 9 });
  model.eval();
  const rng = new Rng(4);
  const more = (n: number) => Array.from({ length: n }, () => rng.int(SHAPE.vocab_size));
  const opts = { maxNewTokens: 6, stopIds: [] };
  const before = cudaBackend().memoryStats().allocatedBytes;
  const state = new DecodingState(16);
  const first = more(5);
  const a = model.generate(first, { ...opts, state });
  const small = state.cache as PreallocatedKvCache;
  const second = [...first, ...a, ...more(30)]; // 47 positions with its answer, beyond the 32 cached
  const b = model.generate(second, { ...opts, state });
  const grown = state.cache as PreallocatedKvCache;
  assert.notEqual(grown, small);
  assert.equal(grown.capacity, 64);
  assert.deepEqual(grown.decodeGraph!.counts, { eager: 1, captured: 1, replayed: opts.maxNewTokens - 3 }, 'a graph of its own');

  // the larger cache does not fit beside the one it grows from: made afresh, the prompt run whole
  const third = [...second, ...b, ...more(30)];
  const resized = PreallocatedKvCache.prototype.resized;
  const alloc = CachingAllocator.prototype.alloc;
  let resizing = false;
  let allocs = 0;
  PreallocatedKvCache.prototype.resized = function (this: PreallocatedKvCache, capacity: number) {
    resizing = true;
    try {
      return resized.call(this, capacity);
    } finally {
      resizing = false;
    }
  };
  CachingAllocator.prototype.alloc = function (this: CachingAllocator, bytes, what) {
    if (resizing && ++allocs > 3) throw new CudaOutOfMemoryError(`no room for ${what()}`, {});
    return alloc.call(this, bytes, what);
  };
  let c: number[];
  try {
    c = model.generate(third, { ...opts, state });
  } finally {
    PreallocatedKvCache.prototype.resized = resized;
    CachingAllocator.prototype.alloc = alloc;
  }
  assert.ok(allocs > 3, 'the larger cache ran out part way');
  assert.equal(state.cache!.capacity, 112);
  state.dispose();
  assert.equal(cudaBackend().memoryStats().allocatedBytes, before, 'nothing of the caches is left, the failed one included');
  assert.deepEqual(a, model.generate(first, opts));
  assert.deepEqual(b, model.generate(second, opts));
  assert.deepEqual(c, model.generate(third, opts));
});
