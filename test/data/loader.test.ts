// The batch loader: every item once per epoch, deterministic for a seed, and resumable exactly:
// the batches from a saved position are the batches an uninterrupted run would have produced.

import test from 'node:test';
import assert from 'node:assert/strict';
import type { EncodedSample } from '../../src/data/encode.ts';
import { BatchLoader, type DataPosition } from '../../src/data/loader.ts';
import { packSamples } from '../../src/data/pack.ts';

const samples: EncodedSample[] = Array.from({ length: 23 }, (_, k) => {
  const inputIds = Int32Array.from({ length: 1 + (k % 5) }, (_, i) => 100 * k + i);
  return { inputIds, labels: inputIds.slice() };
});
const firstId = (s: EncodedSample): number => s.inputIds[0]!;

test('each epoch visits every item once; epochs differ; the same seed gives the same order', () => {
  const loader = new BatchLoader(samples, { batchSize: 4, seed: 7 });
  assert.equal(loader.stepsPerEpoch, 6); // ceil(23 / 4): the short last batch is kept
  const epoch = (l: BatchLoader, e: number): number[] =>
    Array.from({ length: l.stepsPerEpoch }, (_, step) => l.indicesAt({ epoch: e, step })).flat();
  const e0 = epoch(loader, 0);
  assert.deepEqual([...e0].sort((a, b) => a - b), samples.map((_, i) => i));
  assert.notDeepEqual(e0, epoch(loader, 1));
  assert.deepEqual(e0, epoch(new BatchLoader(samples, { batchSize: 4, seed: 7 }), 0));
  assert.notDeepEqual(e0, epoch(new BatchLoader(samples, { batchSize: 4, seed: 8 }), 0));
  assert.deepEqual(epoch(new BatchLoader(samples, { batchSize: 4, seed: 7, shuffle: false }), 0), samples.map((_, i) => i));
});

test('resuming from a saved position continues exactly where an uninterrupted run was', () => {
  const run = (from: DataPosition | undefined, n: number): { pos: DataPosition; ids: number[] }[] => {
    const loader = new BatchLoader(samples, { batchSize: 5, seed: 3 });
    const out: { pos: DataPosition; ids: number[] }[] = [];
    for (const { batch, position } of loader.batches(from)) {
      const T = batch.shape[1];
      out.push({ pos: position, ids: Array.from({ length: batch.shape[0] }, (_, b) => batch.inputIds[b * T]!) });
      if (out.length === n) break;
    }
    return out;
  };
  const whole = run(undefined, 13); // 5 steps per epoch: crosses two epoch ends
  const saved = whole[6]!.pos;
  assert.deepEqual(saved, { epoch: 1, step: 1 });
  assert.deepEqual(run(saved, 7), whole.slice(6));
  // batch contents are the items in the epoch order
  const loader = new BatchLoader(samples, { batchSize: 5, seed: 3 });
  assert.deepEqual(whole[7]!.ids, loader.indicesAt({ epoch: 1, step: 2 }).map((i) => firstId(samples[i]!)));
});

test('packed rows are collated as rows; samples as padded batches', () => {
  const { rows } = packSamples(samples, 8);
  const packed = new BatchLoader(rows, { batchSize: 2, seed: 0 }).batchAt({ epoch: 0, step: 0 });
  assert.deepEqual(packed.shape, [2, 8]);
  const padded = new BatchLoader(samples, { batchSize: 3, seed: 0, shuffle: false }).batchAt({ epoch: 0, step: 0 });
  assert.deepEqual(padded.shape, [3, 3]); // lengths 1, 2, 3
  assert.deepEqual(Array.from(padded.attentionMask), [1, 0, 0, 1, 1, 0, 1, 1, 1]);
  assert.throws(() => new BatchLoader(samples, { batchSize: 0, seed: 0 }), /batch_size must be a positive integer/);
});
