// NF4 against an independent transcription of bitsandbytes' CUDA path (the one QLoRA trains with):
// `quantize_4bit(A, blocksize=64, quant_type='nf4', compress_statistics=True)` and `dequantize_4bit`.
// Sources transcribed here (bitsandbytes-foundation/bitsandbytes):
// - csrc/cuda/blockwise_quantization.cu @12297f3b: kQuantizeBlockwise<T, 64, 2, 0, NF4> (absmax by fmaxf,
//   `1.0f / absmax`, `dQuantizeNF4(((float)vals[2j]) * inv) << 4 | dQuantizeNF4(vals[2j+1] * inv)`,
//   padded elements loaded as 0, (valid_items + 1) / 2 bytes stored), dQuantizeNF4 (the threshold tree),
//   dQuantize<0> (the 8-bit pivot search used for the nested absmax);
// - bitsandbytes/functional.py quantize_4bit: offset = absmax.mean(); quantize_blockwise(absmax - offset,
//   blocksize=256) with create_dynamic_map(signed=True); dequantize: code[c] * absmax2 + offset;
// The mean is taken in float64 here (torch takes it in float32 on the device; a last-bit difference of
// the offset is not what these tests are about). Known and kept: an odd length's padding nibble is
// stored as code 0 (bitsandbytes: code 7, 0.0; the values are the same), and an all-zero block
// dequantises to 0 (bitsandbytes: 1/0 * 0 = NaN -> code 0 -> -absmax2-decoded scale).

import test from 'node:test';
import assert from 'node:assert/strict';
import { DYNAMIC_CODE, NF4_CODE, dequantizeNf4, quantizeNf4 } from '../../src/quant/nf4.ts';

const fr = Math.fround;
const FLT_MAX = 3.4028234663852886e38;

/** csrc dQuantizeNF4: the thresholds as the CUDA source writes them (float literals). */
function dQuantizeNF4(x: number): number {
  const t = (v: number) => fr(v);
  if (x > t(0.03979014977812767)) {
    if (x > t(0.3893125355243683)) {
      if (x > t(0.6427869200706482)) return x > t(0.8614784181118011) ? 0b1111 : 0b1110;
      return x > t(0.5016634166240692) ? 0b1101 : 0b1100;
    }
    if (x > t(0.2035212516784668)) return x > t(0.2920137718319893) ? 0b1011 : 0b1010;
    return x > t(0.1202552504837513) ? 0b1001 : 0b1000;
  }
  if (x > t(-0.33967943489551544)) {
    if (x > t(-0.13791173323988914)) return x > t(-0.045525018125772476) ? 0b0111 : 0b0110;
    return x > t(-0.23460740596055984) ? 0b0101 : 0b0100;
  }
  if (x > t(-0.6106329262256622)) return x > t(-0.4599952697753906) ? 0b0011 : 0b0010;
  return x > t(-0.8480964004993439) ? 0b0001 : 0b0000;
}

/** torch.linspace(start, end, steps, dtype=float32) on the CPU (RangeFactoriesKernel.cpp linspace_kernel). */
function linspace(start: number, end: number, steps: number): number[] {
  const s = fr(start);
  const e = fr(end);
  const step = fr(fr(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => (i < half ? fr(s + fr(step * i)) : fr(e - fr(step * (steps - i - 1)))));
}

/** bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8). */
function createDynamicMap(): Float32Array {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspace(0.1, 1, 2 ** i + 1);
    const scale = fr(10 ** (-6 + i));
    for (let k = 0; k + 1 < b.length; k++) {
      const mean = fr(fr(b[k]! + b[k + 1]!) / 2);
      data.push(fr(scale * mean), fr(-scale * mean));
    }
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  return Float32Array.from(data);
}
const DYN = createDynamicMap();

/** csrc dQuantize<0>: the 8-bit code of x by bitsandbytes' pivot search. */
function dQuantize(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot]!;
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot]!;
  }
  if (upperPivot === 255) upper = code[upperPivot]!;
  if (lowerPivot === 0) lower = code[lowerPivot]!;
  if (x > val) return x > fr(fr(upper + val) * 0.5) ? upperPivot : pivot;
  return x < fr(fr(lower + val) * 0.5) ? lowerPivot : pivot;
}

interface BnbState {
  packed: Uint8Array;
  absmax: Float32Array; // first-level, float32
  codes: Uint8Array | null; // nested
  absmax2: Float32Array | null;
  offset: number;
}

/** kQuantizeBlockwise over blocks of `bs` with `valid` items each, padded with 0, absmax by fmaxf (NaN ignored). */
function blockAbsmax(v: Float32Array, bs: number): Float32Array {
  const nb = Math.ceil(v.length / bs);
  const out = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    let m = -FLT_MAX;
    for (let k = 0; k < bs; k++) {
      const i = b * bs + k;
      const a = i < v.length ? Math.abs(v[i]!) : 0;
      if (!Number.isNaN(a)) m = Math.max(m, a); // fmaxf
    }
    out[b] = m;
  }
  return out;
}

function bnbQuantize4bit(v: Float32Array, compress: boolean): BnbState {
  const n = v.length;
  const absmax = blockAbsmax(v, 64);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < absmax.length; b++) {
    const inv = fr(1 / absmax[b]!); // 1/0 = inf: 0 * inf = NaN
    for (let k = 0; k < 64; k += 2) {
      const i = b * 64 + k;
      if (i >= n) break;
      const hi = dQuantizeNF4(fr(v[i]! * inv));
      const lo = dQuantizeNF4(fr((i + 1 < n ? v[i + 1]! : 0) * inv)); // padded with (T)0.0f
      packed[i >> 1] = (hi << 4) | lo;
    }
  }
  if (!compress) return { packed, absmax, codes: null, absmax2: null, offset: 0 };
  let sum = 0;
  for (const a of absmax) sum += a;
  const offset = fr(sum / absmax.length);
  const centred = absmax.map((a) => fr(a - offset));
  const absmax2 = blockAbsmax(centred, 256);
  const codes = new Uint8Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) codes[i] = dQuantize(DYN, fr(centred[i]! * fr(1 / absmax2[Math.floor(i / 256)]!)));
  return { packed, absmax, codes, absmax2, offset };
}

/** dequantize_4bit: nested absmax decoded (code * absmax2, then + offset), then code[q] * absmax in float32. */
function bnbDequantize4bit(s: BnbState, n: number): Float32Array {
  const scales = s.codes ? Float32Array.from(s.codes, (c, b) => fr(fr(DYN[c]! * s.absmax2![Math.floor(b / 256)]!) + s.offset)) : s.absmax;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = s.packed[i >> 1]!;
    out[i] = fr(NF4_CODE[i & 1 ? byte & 0xf : byte >> 4]! * scales[Math.floor(i / 64)]!);
  }
  return out;
}

/** Deterministic N(0, 1)-ish values. */
function gaussian(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): string {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `first difference at ${i}: got ${a[i]}, bitsandbytes ${b[i]}`;
  return a.length === b.length ? 'equal' : `lengths ${a.length} vs ${b.length}`;
}

test('the dynamic map is bitsandbytes create_dynamic_map(signed=True), value for value', () => {
  assert.deepEqual(DYNAMIC_CODE, DYN);
});

test('even lengths (partial 64- and 256-blocks, NaN, bf16-valued weights): bytes, scales and values equal bitsandbytes', () => {
  for (const [n, seed] of [[64 * 37 + 2, 1], [64 * 300 + 18, 2], [64 * 513, 3], [2, 4], [130, 5]] as const) {
    const x = gaussian(n, seed);
    for (let i = 0; i < n; i++) x[i]! *= 0.02 * (1 + ((i >> 6) % 13)); // absmax varies across blocks
    if (n > 200) x[77] = NaN; // bitsandbytes: NaN * inv -> code 0 (every comparison false), absmax ignores it
    for (const bf16 of [false, true]) {
      const v = bf16 ? x.map((a) => new Float32Array(new Uint32Array([new Uint32Array(Float32Array.of(a).buffer)[0]! & 0xffff0000]).buffer)[0]!) : x;
      for (const compress of [false, true]) {
        const ref = bnbQuantize4bit(v, compress);
        const q = quantizeNf4(v, { doubleQuant: compress });
        const what = `n=${n} bf16=${bf16} double=${compress}`;
        assert.equal(firstDiff(q.packed, ref.packed), 'equal', `${what}: packed`);
        if (compress) {
          // a 256-group whose centred absmax values are all 0 (e.g. one block): bitsandbytes codes NaN as 0, this port 0.0
          // as 127; both decode to 0 * 0 + offset, so only groups with a non-zero scale are compared byte for byte
          if (ref.absmax2!.every((s) => s !== 0)) assert.equal(firstDiff(q.nested!.codes, ref.codes!), 'equal', `${what}: absmax codes`);
          assert.equal(firstDiff(q.nested!.scales, ref.absmax2!), 'equal', `${what}: absmax2`);
          assert.equal(q.nested!.offset, ref.offset, `${what}: offset`);
        } else {
          assert.equal(firstDiff(q.absmax!, ref.absmax), 'equal', `${what}: absmax`);
        }
        assert.equal(firstDiff(dequantizeNf4(q), bnbDequantize4bit(ref, n)), 'equal', `${what}: dequantised`);
      }
    }
  }
});
