// createModel's init 'tiled' (fast random weights for benchmarks): every parameter has the shape of
// the 'normal' model, weights are normal values of std initializer_range repeated with period
// TILE_VALUES, norms are ones, biases zeros, and a seed fixes every value.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createModel, type CausalLM } from '../../src/models/index.ts';
import { TILE_VALUES } from '../../src/models/load.ts';

const CONFIG = {
  model_type: 'qwen2', // q/k/v biases: the zeros path too
  vocab_size: 1000,
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  initializer_range: 0.05,
  tie_word_embeddings: false,
};
// std of 65536 normal draws: relative standard error 1 / sqrt(2 * 65536) ~ 0.3%; 3% is 10 sigma
const STD_RTOL = 0.03;

function params(m: CausalLM): Map<string, { shape: readonly number[]; v: Float32Array }> {
  return new Map([...m.namedParameters()].map(([n, p]) => [n, { shape: p.shape, v: p.toFloat32Array() }]));
}

const isNorm = (name: string): boolean => /norm\.weight$/.test(name);
const isBias = (name: string): boolean => name.endsWith('.bias');

for (const dtype of ['float32', 'bfloat16'] as const) {
  test(`tiled init (${dtype}): shapes, std, norms, biases, period`, () => {
    const normal = params(createModel(CONFIG, { seed: 3, dtype }));
    const tiled = params(createModel(CONFIG, { seed: 3, dtype, init: 'tiled' }));
    assert.deepEqual([...tiled.keys()], [...normal.keys()]);
    let sumSq = 0;
    let count = 0;
    for (const [name, { shape, v }] of tiled) {
      assert.deepEqual(shape, normal.get(name)!.shape, name);
      if (isNorm(name)) assert.ok(v.every((x) => x === 1), `${name}: norms are ones`);
      else if (isBias(name)) assert.ok(v.every((x) => x === 0), `${name}: biases are zeros`);
      else {
        for (let i = 0; i < v.length; i++) sumSq += v[i]! * v[i]!;
        count += v.length;
        // the embedding (64000 values) is shorter than a period; the stack of weights is not
        for (let i = TILE_VALUES; i < v.length; i++) assert.equal(v[i], v[i - TILE_VALUES], `${name}[${i}] repeats`);
      }
    }
    const std = Math.sqrt(sumSq / count);
    assert.ok(Math.abs(std - CONFIG.initializer_range) <= STD_RTOL * CONFIG.initializer_range, `std ${std}, expected ~${CONFIG.initializer_range}`);
  });
}

test('tiled init: the seed fixes every value, another seed changes them', () => {
  const a = params(createModel(CONFIG, { seed: 11, init: 'tiled' }));
  const b = params(createModel(CONFIG, { seed: 11, init: 'tiled' }));
  const c = params(createModel(CONFIG, { seed: 12, init: 'tiled' }));
  for (const [name, { v }] of a) assert.deepEqual(v, b.get(name)!.v, name);
  const w = 'model.layers.0.mlp.gate_proj.weight';
  assert.notDeepEqual(a.get(w)!.v, c.get(w)!.v);
});

test('tiled init: a weight longer than one period is the block repeated from its start', () => {
  const big = { ...CONFIG, hidden_size: 256, intermediate_size: 512, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 8 };
  const p = params(createModel(big, { seed: 5, init: 'tiled' }));
  const v = p.get('model.layers.1.mlp.up_proj.weight')!.v; // 131072 values = 2 periods
  assert.equal(v.length, 2 * TILE_VALUES);
  assert.deepEqual(v.subarray(TILE_VALUES), v.subarray(0, TILE_VALUES));
  // not constant, and not all weights start at the same place of the block
  assert.ok(new Set(v.subarray(0, 100)).size > 90);
  assert.notDeepEqual(p.get('model.layers.1.mlp.gate_proj.weight')!.v.subarray(0, 16), v.subarray(0, 16));
});

test('createModel rejects an unknown init', () => {
  assert.throws(() => createModel(CONFIG, { init: 'uniform' as 'normal' }), /init "uniform" is not one of normal, tiled/);
});
