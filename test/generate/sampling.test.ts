import test from 'node:test';
import assert from 'node:assert/strict';
import { applyRepetitionPenalty, applyTopK, applyTopP, argmax, candidates, kthLargest, pickFromRow, pickToken, topP } from '../../src/generate/sampling.ts';
import { TensorLogitsRow } from '../../src/generate/logits-row.ts';
import { tensor } from '../../src/tensor/index.ts';
import { seededRandom } from '../../src/data/rng.ts';

const logOf = (ps: number[]) => Float32Array.from(ps, Math.log);

test('repetition penalty divides positive and multiplies negative logits, once per distinct id', () => {
  const l = new Float32Array([2, -2, 1]);
  applyRepetitionPenalty(l, [0, 1, 1], 2);
  assert.deepEqual([...l], [1, -4, 1]);
});

test('top-k keeps ties with the k-th value', () => {
  const a = new Float32Array([1, 3, 3, 2]);
  applyTopK(a, 2);
  assert.deepEqual([...a], [-Infinity, 3, 3, -Infinity]);
  const b = new Float32Array([1, 3, 3, 2]);
  applyTopK(b, 3);
  assert.deepEqual([...b], [-Infinity, 3, 3, 2]);
});

test('the k-th largest value is the sorted array\'s, ties and -Infinity included, for every k', () => {
  const uniform = seededRandom(7);
  for (const n of [1, 2, 5, 33, 1000]) {
    // few distinct values, so ties are common; some masked
    const a = Float32Array.from({ length: n }, () => (uniform() < 0.1 ? -Infinity : Math.floor(uniform() * 8) - 4));
    const sorted = Float32Array.from(a).sort().reverse();
    for (const k of [1, 2, 3, Math.max(1, n >> 1), n]) if (k <= n) assert.equal(kthLargest(a, k), sorted[k - 1], `n ${n}, k ${k}`);
  }
});

test('top-p drops the least likely tokens whose cumulative mass stays within 1 - p', () => {
  const a = logOf([0.1, 0.2, 0.3, 0.4]);
  applyTopP(a, 0.65); // ascending cumsum 0.1, 0.3, 0.6, 1.0; drop those <= 0.35
  assert.deepEqual([...a].map(Number.isFinite), [false, false, true, true]);
  const b = logOf([0.1, 0.2, 0.3, 0.4]);
  applyTopP(b, 0.01); // only the most likely survives
  assert.deepEqual([...b].map(Number.isFinite), [false, false, false, true]);
});

test('greedy picks the first maximum; sampling inverts the CDF of softmax(logits / T)', () => {
  assert.equal(argmax(new Float32Array([0, 5, 5, 1])), 1);
  assert.equal(pickToken(new Float32Array([0, 5, 5, 1]), [], {}, () => 0.99), 1);
  const p = [0.1, 0.2, 0.3, 0.4];
  assert.equal(pickToken(logOf(p), [], { temperature: 1 }, () => 0.05), 0);
  assert.equal(pickToken(logOf(p), [], { temperature: 1 }, () => 0.25), 1);
  assert.equal(pickToken(logOf(p), [], { temperature: 1 }, () => 0.95), 3);
  // Temperature 0.5 squares the odds: [0, ln 3] -> probabilities 0.1, 0.9.
  const two = () => new Float32Array([0, Math.log(3)]);
  assert.equal(pickToken(two(), [], { temperature: 0.5 }, () => 0.09), 0);
  assert.equal(pickToken(two(), [], { temperature: 0.5 }, () => 0.11), 1);
  // Top-k 1 makes sampling greedy whatever the draw.
  assert.equal(pickToken(logOf(p), [], { temperature: 1, topK: 1 }, () => 0), 3);
  // Repetition penalty applies before the choice: 3 is penalised below 2.
  assert.equal(pickToken(new Float32Array([0, 0, 1.5, 2]), [3], { repetitionPenalty: 2 }, () => 0), 2);
});

// HF's warpers as written: each over the whole row, in place, then the CDF over the whole row.
function naivePick(row: Float32Array, o: { temperature: number; topK: number; topP: number }, u: number): number {
  const l = row.map((v) => v / o.temperature);
  if (o.topK > 0 && o.topK < l.length) {
    const kth = Float32Array.from(l).sort().reverse()[o.topK - 1]!;
    l.forEach((v, i) => v < kth && (l[i] = -Infinity));
  }
  const probsOf = (x: Float32Array) => {
    const m = Math.max(...x);
    const e = Array.from(x, (v) => (v === -Infinity ? 0 : Math.exp(v - m)));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };
  if (o.topP < 1) {
    const probs = probsOf(l);
    const order = [...l.keys()].filter((i) => l[i] !== -Infinity).sort((a, b) => l[a]! - l[b]! || a - b);
    let cum = 0;
    for (let r = 0; r < order.length - 1; r++) {
      cum += probs[order[r]!]!;
      if (cum > 1 - o.topP) break;
      l[order[r]!] = -Infinity;
    }
  }
  const probs = probsOf(l);
  let cum = 0;
  for (let i = 0; i < probs.length; i++) if (u < (cum += probs[i]!) && probs[i]! > 0) return i;
  return probs.findLastIndex((p) => p > 0);
}

test('sampling over the top-k candidates picks what the warpers over the whole row pick', () => {
  const uniform = seededRandom(11);
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + Math.floor(uniform() * 300);
    // coarse values so ties are common, a few masked
    const row = Float32Array.from({ length: n }, () => (uniform() < 0.05 ? -Infinity : Math.round((uniform() - 0.5) * 40) / 4));
    if (!row.some(Number.isFinite)) row[0] = 0;
    const o = { temperature: [0.1, 0.7, 1, 2][trial % 4]!, topK: [0, 1, 5, 40, n][trial % 5]!, topP: [1, 0.75, 0.3, 0.999][trial % 7 % 4]! };
    const u = uniform();
    assert.equal(pickToken(Float32Array.from(row), [], o, () => u), naivePick(row, o, u), `trial ${trial}: ${JSON.stringify(o)}, u ${u}`);
  }
});

test('choosing from a row through the backend (greedy, top-k candidates) picks what pickToken picks from the whole row', () => {
  const uniform = seededRandom(23);
  for (let trial = 0; trial < 200; trial++) {
    // more than MAX_CANDIDATES ties in some rows (the whole-row path), few in most
    const n = trial % 10 === 0 ? 1500 : 1 + Math.floor(uniform() * 400);
    const levels = trial % 10 === 0 ? 1 : 40;
    const row = Float32Array.from({ length: n }, () => (uniform() < 0.03 ? -Infinity : Math.round((uniform() - 0.5) * levels) / 4));
    const dtype = trial % 2 ? 'float32' : 'bfloat16';
    const t = tensor(row, [1, 1, n], { dtype });
    const o = { temperature: [0, 0.1, 0.7, 1.3][trial % 4]!, topK: [0, 1, 5, 40, n][trial % 5]!, topP: [1, 0.75, 0.3][trial % 3]!, repetitionPenalty: trial % 7 === 0 ? 1.2 : 1 };
    const context = [0, Math.floor(n / 2)];
    const u = uniform();
    const want = pickToken(t.toFloat32Array(), context, o, () => u);
    assert.equal(pickFromRow(new TensorLogitsRow(t, true), context, o, () => u), want, `trial ${trial}: n ${n}, ${dtype}, ${JSON.stringify(o)}`);
  }
});

test('a row on the backend refuses top-k outside [1, n), where the kernels would disagree', () => {
  const row = new TensorLogitsRow(tensor(Float32Array.of(1, 2, 3), [1, 1, 3]), true);
  for (const k of [0, 3, 4, 1.5]) assert.throws(() => row.topK(k, 1), /k must be an integer in \[1, 3\)/);
  assert.deepEqual([...row.topK(2, 1)!.ids], [1, 2]);
  row.dispose();
});

// transformers' TopPLogitsWarper sums the sorted probabilities in float32 and compares with
// float32(1 - p): with 10 equal logits and p = 0.9, float32(1 - 0.9) = float32(0.1), the first
// token's mass, so it is dropped and 9 are kept (in float64, 0.1 > 0.09999999999999998 kept 10).
test('top-p compares the float32 cumulative mass with float32(1 - p), as HF does (10 ties, p = 0.9: 9 kept)', () => {
  assert.equal(topP(candidates(new Float32Array(10), 0), 0.9).ids.length, 9);
  assert.equal(topP(candidates(new Float32Array(4), 0), 0.75).ids.length, 3); // 1 - 0.75 exact: 0.25 <= 0.25 drops one
});
