// Packing and collation: rows of exactly max_length, no token lost or duplicated, labels and
// positions aligned with their tokens, boundaries where the samples are (checked against the
// llama_packed reference case, and against sample lengths computed independently).

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { IGNORE_INDEX, type EncodedSample } from '../../src/data/encode.ts';
import { collatePacked, collatePadded, packSamples } from '../../src/data/pack.ts';

/** Integer tensors of a safetensors file (test-only reader: header + little-endian data). */
function readIntTensors(file: string): Record<string, number[]> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const out: Record<string, number[]> = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || (t.dtype !== 'I64' && t.dtype !== 'I32')) continue;
    const [a, b] = t.data_offsets;
    const size = t.dtype === 'I64' ? 8 : 4;
    out[name] = [];
    for (let o = 8 + n + a; o < 8 + n + b; o += size) out[name]!.push(size === 8 ? Number(buf.readBigInt64LE(o)) : buf.readInt32LE(o));
  }
  return out;
}

/** A sample of `len` tokens with distinct ids (id = 1000*tag + position), some labels masked. */
function sample(tag: number, len: number): EncodedSample {
  const inputIds = Int32Array.from({ length: len }, (_, i) => tag * 1000 + i);
  const labels = Int32Array.from(inputIds, (id, i) => (i < len / 3 ? IGNORE_INDEX : id));
  return { inputIds, labels };
}

test('llama_packed reference: samples of 5, 7, 4 tokens into one row of 16', () => {
  const ref = readIntTensors('test/fixtures/models/llama_packed/expected.safetensors');
  const ids = ref.input_ids!;
  const samples = [[0, 5], [5, 12], [12, 16]].map(([a, b]) => {
    const inputIds = Int32Array.from(ids.slice(a, b));
    return { inputIds, labels: inputIds.slice() };
  });
  const { rows, paddingTokens } = packSamples(samples, 16);
  assert.equal(rows.length, 1);
  assert.equal(paddingTokens, 0);
  assert.deepEqual(Array.from(rows[0]!.inputIds), ids);
  assert.deepEqual(Array.from(rows[0]!.positionIds), ref.position_ids);
  assert.deepEqual(Array.from(rows[0]!.cuSeqlens), ref.cu_seqlens);
});

test('a sample cut at a row end continues the next row, positions restarting (XTuner varlen)', () => {
  const { rows } = packSamples([sample(1, 6), sample(2, 7), sample(3, 3)], 8);
  // stream: 1:0-5 | 2:0-6 | 3:0-2  (16 tokens) -> rows [1x6, 2x2] [2x5, 3x3]
  assert.equal(rows.length, 2);
  assert.deepEqual(Array.from(rows[0]!.cuSeqlens), [0, 6, 8]);
  assert.deepEqual(Array.from(rows[1]!.cuSeqlens), [0, 5, 8]);
  assert.deepEqual(Array.from(rows[0]!.positionIds), [0, 1, 2, 3, 4, 5, 0, 1]);
  assert.deepEqual(Array.from(rows[1]!.positionIds), [0, 1, 2, 3, 4, 0, 1, 2]);
  assert.deepEqual(Array.from(rows[1]!.inputIds), [2002, 2003, 2004, 2005, 2006, 3000, 3001, 3002]);
});

test('random samples: rows of exactly max_length, no token lost or duplicated, labels and positions aligned', () => {
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (const maxLength of [1, 7, 32, 100]) {
    const samples = Array.from({ length: 60 }, (_, k) => sample(k + 1, 1 + rand(maxLength)));
    const { rows, paddingTokens } = packSamples(samples, maxLength);
    const total = samples.reduce((n, s) => n + s.inputIds.length, 0);
    assert.equal(rows.length, Math.ceil(total / maxLength));
    assert.equal(paddingTokens, rows.length * maxLength - total);
    // the rows, concatenated and without the padding, are the samples concatenated
    const flatIds = rows.flatMap((r) => Array.from(r.inputIds)).slice(0, total);
    const flatLabels = rows.flatMap((r) => Array.from(r.labels)).slice(0, total);
    assert.deepEqual(flatIds, samples.flatMap((s) => Array.from(s.inputIds)));
    assert.deepEqual(flatLabels, samples.flatMap((s) => Array.from(s.labels)));
    // boundaries: every sample end and every row end, nothing else (plus the end of the padding)
    const expected = new Set<number>();
    let end = 0;
    for (const s of samples) expected.add((end += s.inputIds.length));
    for (let r = 1; r <= rows.length; r++) expected.add(r * maxLength);
    const got = new Set<number>();
    rows.forEach((r, i) => {
      assert.equal(r.inputIds.length, maxLength);
      assert.equal(r.cuSeqlens[0], 0);
      assert.equal(r.cuSeqlens[r.cuSeqlens.length - 1], maxLength);
      for (let k = 1; k < r.cuSeqlens.length; k++) {
        assert.ok(r.cuSeqlens[k]! > r.cuSeqlens[k - 1]!, 'boundaries increase');
        got.add(i * maxLength + r.cuSeqlens[k]!);
        // positions count 0.. within each piece; a token's position is its index in its sample
        // piece, and ids encode (sample, index in sample): a piece is one run of one sample
        for (let t = r.cuSeqlens[k - 1]!; t < r.cuSeqlens[k]!; t++) {
          assert.equal(r.positionIds[t], t - r.cuSeqlens[k - 1]!);
          if (i * maxLength + t < total) assert.equal(Math.floor(r.inputIds[t]! / 1000), Math.floor(r.inputIds[r.cuSeqlens[k - 1]!]! / 1000));
        }
      }
    });
    assert.deepEqual([...got].sort((a, b) => a - b), [...expected].sort((a, b) => a - b));
    // padding: pad id 0, label -100
    const last = rows[rows.length - 1]!;
    for (let t = maxLength - paddingTokens; t < maxLength; t++) {
      assert.equal(last.inputIds[t], 0);
      assert.equal(last.labels[t], IGNORE_INDEX);
    }
  }
});

test('dropLast drops the partial last row and counts its tokens', () => {
  const r = packSamples([sample(1, 5), sample(2, 5)], 4, { dropLast: true });
  assert.equal(r.rows.length, 2);
  assert.equal(r.droppedTokens, 2);
  assert.equal(r.paddingTokens, 0);
});

test('collatePacked: rows side by side, boundaries shifted by the row offset', () => {
  const { rows } = packSamples([sample(1, 3), sample(2, 7), sample(3, 6)], 8);
  const batch = collatePacked(rows);
  assert.deepEqual(batch.shape, [2, 8]);
  assert.deepEqual(Array.from(batch.cuSeqlens), [0, 3, 8, 10, 16]);
  assert.deepEqual(Array.from(batch.positionIds), [0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 4, 5]);
  assert.ok(batch.attentionMask.every((m) => m === 1));
});

test('collatePadded: right padding with id 0 and label -100, mask 0, padding its own segment', () => {
  const a = { inputIds: Int32Array.from([5, 6, 7]), labels: Int32Array.from([-100, 6, 7]) };
  const b = { inputIds: Int32Array.from([8]), labels: Int32Array.from([8]) };
  const batch = collatePadded([a, b]);
  assert.deepEqual(batch.shape, [2, 3]);
  assert.deepEqual(Array.from(batch.inputIds), [5, 6, 7, 8, 0, 0]);
  assert.deepEqual(Array.from(batch.labels), [-100, 6, 7, 8, -100, -100]);
  assert.deepEqual(Array.from(batch.attentionMask), [1, 1, 1, 1, 0, 0]);
  assert.deepEqual(Array.from(batch.positionIds), [0, 1, 2, 0, 0, 1]);
  assert.deepEqual(Array.from(batch.cuSeqlens), [0, 3, 4, 6]);
});
