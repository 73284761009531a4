// The fused layer ops: rmsNorm, layerNorm, embedding, rope. Forward against float64 references
// written from the Hugging Face / PyTorch definitions, backward against finite differences.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { gradCheck, rmsNormRef, type Ref } from './gradcheck.ts';

function layerNormRef(rows: number, H: number, eps: number, bias: boolean): Ref {
  return ([x, w, b]) => {
    const out = new Float64Array(rows * H);
    for (let r = 0; r < rows; r++) {
      const row = x!.subarray(r * H, (r + 1) * H);
      const mu = row.reduce((a, v) => a + v, 0) / H;
      const v = row.reduce((a, t) => a + (t - mu) ** 2, 0) / H;
      for (let c = 0; c < H; c++) out[r * H + c] = ((row[c]! - mu) / Math.sqrt(v + eps)) * w![c]! + (bias ? b![c]! : 0);
    }
    return out;
  };
}

test('rmsNorm', () => {
  for (const seed of [1, 2, 3]) {
    gradCheck('rmsNorm', [{ shape: [2, 3, 16] }, { shape: [16] }], ([x, w]) => T.rmsNorm(x!, w!, 1e-6), rmsNormRef(6, 16, 1e-6), seed);
    gradCheck('rmsNorm eps', [{ shape: [5, 7] }, { shape: [7] }], ([x, w]) => T.rmsNorm(x!, w!, 0.1), rmsNormRef(5, 7, 0.1), seed);
  }
});

test('layerNorm with and without bias', () => {
  for (const seed of [4, 5]) {
    gradCheck('layerNorm', [{ shape: [4, 12] }, { shape: [12] }, { shape: [12] }], ([x, w, b]) => T.layerNorm(x!, w!, b!, 1e-5), layerNormRef(4, 12, 1e-5, true), seed);
    gradCheck('layerNorm no bias', [{ shape: [2, 3, 8] }, { shape: [8] }], ([x, w]) => T.layerNorm(x!, w!, null, 1e-5), layerNormRef(6, 8, 1e-5, false), seed);
  }
});

test('embedding gathers rows and scatter-adds gradients (repeated ids accumulate)', () => {
  const ids = new Int32Array([3, 0, 3, 5, 1, 3]);
  const ref: Ref = ([w]) => {
    const out = new Float64Array(ids.length * 4);
    ids.forEach((id, i) => out.set(w!.subarray(id * 4, id * 4 + 4), i * 4));
    return out;
  };
  for (const seed of [6, 7]) gradCheck('embedding', [{ shape: [6, 4] }], ([w]) => T.embedding(w!, T.tensor(ids, [2, 3])), ref, seed);
  T.tidy(() => {
    const w = T.zeros([6, 4]);
    assert.deepEqual(T.embedding(w, T.tensor(ids, [2, 3])).shape, [2, 3, 4]);
    assert.deepEqual(T.embedding(w, ids).shape, [6, 4]);
    assert.throws(() => T.embedding(w, new Int32Array([1, 6])), /embedding: id 6 at position 1 is outside the vocabulary \[0, 6\)/);
    assert.throws(() => T.embedding(w, new Int32Array([-1])), /id -1/);
    // host ids with a shape (what CausalLM passes): checked on the host, the same message
    const host = T.embedding(w, { data: ids, shape: [2, 3] });
    assert.deepEqual(host.shape, [2, 3, 4]);
    assert.deepEqual(host.toFloat32Array(), T.embedding(w, T.tensor(ids, [2, 3])).toFloat32Array());
    assert.throws(() => T.embedding(w, { data: new Int32Array([0, 1, 9, 2]), shape: [2, 2] }), /embedding: id 9 at position 2 is outside the vocabulary \[0, 6\)/);
    assert.throws(() => T.embedding(w, { data: ids, shape: [4, 2] }), /ids shape \[4, 2\] does not match 6 values/);
    assert.throws(() => T.embedding(w, T.tensor(new Int32Array([7]), [1, 1])), /embedding: id 7 at position 0 is outside/);
  });
});

/** HF apply_rotary_pos_emb: q * cos + rotate_half(q) * sin, cos/sin [B|1, T, D]. */
function ropeRef(B: number, Tn: number, H: number, D: number, csB: number): Ref {
  return ([x, cos, sin]) => {
    const out = new Float64Array(B * Tn * H * D);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < Tn; t++) {
        const cs = ((csB === 1 ? 0 : b) * Tn + t) * D;
        for (let h = 0; h < H; h++) {
          const base = ((b * Tn + t) * H + h) * D;
          for (let i = 0; i < D; i++) {
            const rot = i < D / 2 ? -x![base + i + D / 2]! : x![base + i - D / 2]!;
            out[base + i] = x![base + i]! * cos![cs + i]! + rot * sin![cs + i]!;
          }
        }
      }
    }
    return out;
  };
}

test('rope: rotate_half convention, per-batch and shared tables', () => {
  for (const seed of [8, 9]) {
    // arbitrary cos/sin tables exercise the formula beyond real rotations (halves may differ)
    gradCheck('rope', [{ shape: [2, 5, 3, 8] }, { shape: [2, 5, 8], noGrad: true }, { shape: [2, 5, 8], noGrad: true }], ([x, c, s]) => T.rope(x!, c!, s!), ropeRef(2, 5, 3, 8, 2), seed);
    gradCheck('rope shared', [{ shape: [2, 4, 2, 6] }, { shape: [1, 4, 6], noGrad: true }, { shape: [1, 4, 6], noGrad: true }], ([x, c, s]) => T.rope(x!, c!, s!), ropeRef(2, 4, 2, 6, 1), seed);
  }
  T.tidy(() => {
    // a real rotation keeps each pair's norm
    const D = 4;
    const theta = [0.3, 1.1];
    const cos = T.tensor([...theta, ...theta].map(Math.cos), [1, 1, D]);
    const sin = T.tensor([...theta, ...theta].map(Math.sin), [1, 1, D]);
    const y = T.rope(T.tensor([1, 2, 3, 4], [1, 1, 1, D]), cos, sin).toFloat32Array();
    assert.ok(Math.abs(y[0]! - (1 * Math.cos(0.3) - 3 * Math.sin(0.3))) < 1e-6);
    assert.ok(Math.abs(y[2]! - (3 * Math.cos(0.3) + 1 * Math.sin(0.3))) < 1e-6);
    assert.throws(() => T.rope(T.zeros([1, 2, 1, 4]), T.zeros([1, 3, 4]), T.zeros([1, 3, 4])), /rope: x \[1, 2, 1, 4\] needs cos\/sin/);
  });
});
