// attention: against a float64 reference with an explicit mask, gradients by finite differences,
// and the properties packing and decoding rely on: packed rows equal each sample run alone, GQA
// equals repeated kv heads, a KV-cache query equals the last rows of the full causal pass, and a
// cache filled to kvLength equals its filled keys alone.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { assertClose, FWD_TOL, gradCheck, type Ref } from './gradcheck.ts';

interface Dims {
  B: number;
  Tq: number;
  Tk: number;
  Hq: number;
  Hkv: number;
  D: number;
}

/** Segment id of flattened token b*T + t (cuSeqlens), or the row when there is none. */
function segmentOf(cu: Int32Array | null, T_: number, b: number, t: number): number {
  if (!cu) return b;
  const flat = b * T_ + t;
  let s = 0;
  while (cu[s + 1]! <= flat) s++;
  return s * 1e6 + b; // same sample and same row
}

function attentionRef(d: Dims, causal: boolean, cu: Int32Array | null = null, scale = 1 / Math.sqrt(d.D)): Ref {
  const { B, Tq, Tk, Hq, Hkv, D } = d;
  return ([q, k, v]) => {
    const out = new Float64Array(B * Tq * Hq * D);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < Hq; h++) {
        const kh = Math.floor(h / (Hq / Hkv));
        for (let i = 0; i < Tq; i++) {
          const qi = ((b * Tq + i) * Hq + h) * D;
          const scores: number[] = [];
          const keys: number[] = [];
          for (let j = 0; j < Tk; j++) {
            if (causal && j > i + (Tk - Tq)) continue;
            if (cu && segmentOf(cu, Tq, b, i) !== segmentOf(cu, Tk, b, j)) continue;
            const kj = ((b * Tk + j) * Hkv + kh) * D;
            let s = 0;
            for (let c = 0; c < D; c++) s += q![qi + c]! * k![kj + c]!;
            scores.push(s * scale);
            keys.push(j);
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, b2) => a + b2, 0);
          keys.forEach((j, n) => {
            const vj = ((b * Tk + j) * Hkv + kh) * D;
            for (let c = 0; c < D; c++) out[qi + c]! += (e[n]! / z) * v![vj + c]!;
          });
        }
      }
    }
    return out;
  };
}

function check(name: string, d: Dims, opts: T.AttentionOptions, seeds = [1, 2], probes = 120): void {
  for (const seed of seeds) {
    gradCheck(
      name,
      [{ shape: [d.B, d.Tq, d.Hq, d.D] }, { shape: [d.B, d.Tk, d.Hkv, d.D] }, { shape: [d.B, d.Tk, d.Hkv, d.D] }],
      ([q, k, v]) => T.attention(q!, k!, v!, opts),
      attentionRef(d, opts.causal ?? false, opts.cuSeqlens ?? null, opts.scale),
      seed,
      probes,
    );
  }
}

test('attention: full, causal, custom scale', () => {
  check('full', { B: 2, Tq: 5, Tk: 5, Hq: 2, Hkv: 2, D: 4 }, {});
  check('causal', { B: 2, Tq: 6, Tk: 6, Hq: 2, Hkv: 2, D: 8 }, { causal: true });
  check('scale', { B: 1, Tq: 4, Tk: 4, Hq: 1, Hkv: 1, D: 4 }, { causal: true, scale: 0.37 });
});

test('attention: GQA (Hq = 4 Hkv) and MQA', () => {
  check('gqa', { B: 1, Tq: 5, Tk: 5, Hq: 4, Hkv: 1, D: 4 }, { causal: true });
  check('gqa 2', { B: 2, Tq: 4, Tk: 4, Hq: 6, Hkv: 2, D: 4 }, { causal: true });
});

test('attention: causal with Tq < Tk is aligned bottom-right (KV cache)', () => {
  check('decode 1', { B: 1, Tq: 1, Tk: 7, Hq: 2, Hkv: 1, D: 4 }, { causal: true });
  check('decode 3', { B: 2, Tq: 3, Tk: 8, Hq: 2, Hkv: 2, D: 4 }, { causal: true });
});

test('attention: cuSeqlens packing, also with a sample cut by a row end', () => {
  check('packed', { B: 1, Tq: 9, Tk: 9, Hq: 2, Hkv: 1, D: 4 }, { causal: true, cuSeqlens: new Int32Array([0, 3, 4, 9]) });
  check('packed B=2', { B: 2, Tq: 5, Tk: 5, Hq: 2, Hkv: 2, D: 4 }, { causal: true, cuSeqlens: new Int32Array([0, 2, 7, 10]) });
  check('packed non-causal', { B: 1, Tq: 6, Tk: 6, Hq: 1, Hkv: 1, D: 4 }, { cuSeqlens: new Int32Array([0, 4, 6]) });
});

test('attention: long rows cross the kernel blocks of query rows', () => {
  check('long', { B: 1, Tq: 150, Tk: 150, Hq: 2, Hkv: 1, D: 8 }, { causal: true }, [3], 60);
  check('long packed', { B: 1, Tq: 140, Tk: 140, Hq: 1, Hkv: 1, D: 4 }, { causal: true, cuSeqlens: new Int32Array([0, 70, 71, 140]) }, [4], 60);
});

test('packed rows equal each sample run alone (values and gradients)', () => {
  T.tidy(() => {
    const rng = new T.Rng(11);
    const lens = [4, 1, 6, 5];
    const Tn = 16;
    const [Hq, Hkv, D] = [4, 2, 8];
    const cu = new Int32Array([0, 4, 5, 11, 16]);
    const q = T.randn([1, Tn, Hq, D], { rng, requiresGrad: true });
    const k = T.randn([1, Tn, Hkv, D], { rng, requiresGrad: true });
    const v = T.randn([1, Tn, Hkv, D], { rng, requiresGrad: true });
    const g = T.randn([1, Tn, Hq, D], { rng });
    const packed = T.attention(q, k, v, { causal: true, cuSeqlens: cu });
    packed.backward(g);
    let at = 0;
    for (const len of lens) {
      const part = (t: T.Tensor) => {
        const p = T.slice(t.detach(), 1, at, at + len);
        p.requiresGrad = true;
        return p;
      };
      const [qs, ks, vs] = [part(q), part(k), part(v)];
      const alone = T.attention(qs, ks, vs, { causal: true });
      alone.backward(T.slice(g, 1, at, at + len));
      assertClose(T.slice(packed, 1, at, at + len).toFloat32Array(), alone.toFloat32Array(), FWD_TOL, `sample at ${at}`);
      assertClose(T.slice(q.grad!, 1, at, at + len).toFloat32Array(), qs.grad!.toFloat32Array(), FWD_TOL, `dq at ${at}`);
      assertClose(T.slice(k.grad!, 1, at, at + len).toFloat32Array(), ks.grad!.toFloat32Array(), FWD_TOL, `dk at ${at}`);
      assertClose(T.slice(v.grad!, 1, at, at + len).toFloat32Array(), vs.grad!.toFloat32Array(), FWD_TOL, `dv at ${at}`);
      at += len;
    }
  });
});

test('GQA equals attention over kv heads repeated to Hq', () => {
  T.tidy(() => {
    const rng = new T.Rng(12);
    const q = T.randn([2, 5, 6, 4], { rng });
    const k = T.randn([2, 5, 2, 4], { rng });
    const v = T.randn([2, 5, 2, 4], { rng });
    // repeat_kv: kv head j serves query heads 3j..3j+2
    const rep = (t: T.Tensor) => T.reshape(T.expand(T.reshape(t, [2, 5, 2, 1, 4]), [2, 5, 2, 3, 4]), [2, 5, 6, 4]);
    const a = T.attention(q, k, v, { causal: true }).toFloat32Array();
    const b = T.attention(q, rep(k), rep(v), { causal: true }).toFloat32Array();
    assertClose(a, b, FWD_TOL, 'gqa vs repeated');
  });
});

test('a KV-cache step equals the last rows of the full causal pass', () => {
  T.tidy(() => {
    const rng = new T.Rng(13);
    const q = T.randn([1, 9, 2, 8], { rng });
    const k = T.randn([1, 9, 1, 8], { rng });
    const v = T.randn([1, 9, 1, 8], { rng });
    const full = T.attention(q, k, v, { causal: true });
    const step = T.attention(T.slice(q, 1, 7), k, v, { causal: true });
    assertClose(step.toFloat32Array(), T.slice(full, 1, 7).toFloat32Array(), FWD_TOL, 'kv cache');
  });
});

test('over a KV cache filled to kvLength, attention equals attention over the filled keys alone', () => {
  T.tidy(() => {
    const rng = new T.Rng(17);
    for (const dtype of ['float32', 'bfloat16'] as const) {
      // capacity 12, filled to 7; the rows past it hold values that must not count
      const k = T.randn([2, 12, 1, 8], { rng, dtype });
      const v = T.randn([2, 12, 1, 8], { rng, dtype });
      for (const [tq, len, causal] of [[1, 7, true], [3, 7, true], [2, 12, true], [1, 5, false]] as const) {
        const q = T.randn([2, tq, 2, 8], { rng, dtype });
        const kvLength = T.tensor(Int32Array.of(len), [1], { dtype: 'int32' });
        const cached = T.attention(q, k, v, { causal, kvLength });
        const alone = T.attention(q, T.slice(k, 1, 0, len), T.slice(v, 1, 0, len), { causal });
        assertClose(cached.toFloat32Array(), alone.toFloat32Array(), FWD_TOL, `${dtype}, Tq ${tq}, kvLength ${len}, causal ${causal}`);
      }
    }
  });
});

test('a query row that sees no key of a KV cache gives 0 (kvLength < Tq, causal), the other rows their keys', () => {
  T.tidy(() => {
    const rng = new T.Rng(19);
    const k = T.randn([1, 6, 1, 8], { rng });
    const v = T.randn([1, 6, 1, 8], { rng });
    const q = T.randn([1, 4, 2, 8], { rng });
    // aligned at kvLength 2: row i sees keys [0, i - 1), so rows 0 and 1 see none
    const out = T.attention(q, k, v, { causal: true, kvLength: T.tensor(Int32Array.of(2), [1], { dtype: 'int32' }) });
    assert.deepEqual(Array.from(T.slice(out, 1, 0, 2).toFloat32Array()), new Array(32).fill(0));
    const seen = T.attention(T.slice(q, 1, 2), T.slice(k, 1, 0, 2), T.slice(v, 1, 0, 2), { causal: true });
    assertClose(T.slice(out, 1, 2).toFloat32Array(), seen.toFloat32Array(), FWD_TOL, 'rows that see keys');
  });
});

test('attention rejects inputs that do not fit', () => {
  T.tidy(() => {
    const q = T.zeros([1, 4, 3, 8]);
    const k = T.zeros([1, 4, 2, 8]);
    assert.throws(() => T.attention(q, k, k), /Hq a multiple of Hkv/);
    assert.throws(() => T.attention(T.zeros([1, 5, 2, 8]), k, k, { causal: true }), /causal needs Tq <= Tk/);
    const k2 = T.zeros([1, 4, 1, 8]);
    assert.throws(() => T.attention(T.zeros([1, 4, 2, 8]), k2, k2, { cuSeqlens: new Int32Array([0, 3]) }), /must end at B\*T = 4/);
    assert.throws(() => T.attention(T.zeros([1, 4, 2, 8]), k2, k2, { cuSeqlens: new Int32Array([0, 3, 2, 4]) }), /non-decreasing/);
    const len = T.tensor(Int32Array.of(2), [1], { dtype: 'int32' });
    assert.throws(() => T.attention(T.zeros([1, 1, 2, 8]), k2, k2, { kvLength: T.zeros([1]) }), /kvLength must be int32 \[1\]/);
    assert.throws(() => T.attention(T.zeros([1, 4, 2, 8]), k2, k2, { kvLength: len, cuSeqlens: new Int32Array([0, 4]) }), /kvLength and cuSeqlens/);
    const qg = T.randn([1, 1, 2, 8], { requiresGrad: true });
    assert.throws(() => T.attention(qg, k2, k2, { kvLength: len }), /kvLength is for decoding/);
  });
});
