// A KV cache kept between generations (DecodingState): what it holds of a prompt is not run again,
// and when a generation needs more positions than it has, its keys and values move into a larger
// cache (KvCache.resized) instead of the whole prompt being run again. The ids equal those of
// fresh caches either way.

import assert from 'node:assert/strict';
import test from 'node:test';
import { DecodingState } from '../../src/generate/decode.ts';
import type { KvCache } from '../../src/models/decoder.ts';
import { createModel } from '../../src/models/index.ts';
import { Rng } from '../../src/tensor/index.ts';

const SHAPE = { model_type: 'llama', vocab_size: 97, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };

/**
 * Logits of a position computed in a step of other rows differ by float32 rounding only (measured:
 * at most 6e-8 at logits of ~1e-2; a cache moved without its last row is off by 5e-3).
 */
const LOGITS_TOL = 1e-6;

test('a kept KV cache too small for the next generation moves into a larger one and runs only the new ids', () => {
  const model = createModel(SHAPE, { seed: 3 }).eval();
  let fed: number[] = [];
  let rows: Float32Array[] = [];
  const nextRow = model.nextRow.bind(model);
  model.nextRow = (ids, cache) => {
    fed.push(ids.length);
    const row = nextRow(ids, cache);
    rows.push(row.toFloat32Array());
    return row;
  };
  /** The ids, the rows of logits and the ids run per step of one generation. */
  const generate = (prompt: number[], state?: DecodingState) => {
    [fed, rows] = [[], []];
    const ids = model.generate(prompt, { maxNewTokens: 6, stopIds: [], ...(state ? { state } : {}) });
    return { ids, rows, fed };
  };
  const rng = new Rng(11);
  const more = (n: number) => Array.from({ length: n }, () => rng.int(SHAPE.vocab_size));
  const state = new DecodingState(8);

  const first = more(5);
  const a = generate(first, state);
  const small = state.cache!;
  assert.equal(small.capacity, 24, '5 + 6 positions in chunks of 8, and one chunk more');
  const second = [...first, ...a.ids, ...more(20)]; // 37 positions with its answer: more than the cache has
  const b = generate(second, state);
  const grown: KvCache = state.cache!;
  assert.notEqual(grown, small);
  assert.equal(grown.capacity, 48);
  // the first answer's ids but its last were cached: only what follows them is run
  assert.equal(b.fed[0], second.length - (first.length + a.ids.length - 1));
  const third = [...second.slice(0, 3), ...more(40)]; // a new conversation sharing 3 ids, too long again
  const c = generate(third, state);
  assert.equal(c.fed[0], third.length - 3);
  assert.equal(state.cache!.capacity, 64);
  state.dispose();

  for (const [prompt, kept] of [[first, a], [second, b], [third, c]] as const) {
    const fresh = generate(prompt);
    assert.deepEqual(kept.ids, fresh.ids);
    kept.rows.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - fresh.rows[i]![j]!) <= LOGITS_TOL, `step ${i}, logit ${j}: ${v} against ${fresh.rows[i]![j]}`)));
  }
});

test('DecodingState checks its chunk', () => {
  assert.throws(() => new DecodingState(0), /chunk must be an integer >= 1, got 0/);
});
