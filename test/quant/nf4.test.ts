import test from 'node:test';
import assert from 'node:assert/strict';
import {
  ABSMAX_BLOCK_SIZE, DYNAMIC_CODE, NF4_BLOCK_SIZE, NF4_CODE,
  dequantizeNf4, nf4BlockScales, nf4Index, nf4StoredBytes, quantizeNf4,
} from '../../src/quant/nf4.ts';

// Gaps between neighbouring codes: a value can be off by at most half the gap around it.
const NF4_MAX_HALF_GAP = (NF4_CODE[1]! - NF4_CODE[0]!) / 2; // the widest gap is at -1
const DYNAMIC_MAX_HALF_GAP = Math.max(...DYNAMIC_CODE.slice(1).map((v, i) => v - DYNAMIC_CODE[i]!)) / 2;

/** Deterministic N(0, 1) samples (Box-Muller over a small LCG). */
function gaussian(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

test('the NF4 table is bitsandbytes\' 16 values, sorted, from -1 to 1 with an exact zero', () => {
  assert.equal(NF4_CODE.length, 16);
  assert.equal(NF4_CODE[0], -1);
  assert.equal(NF4_CODE[7], 0);
  assert.equal(NF4_CODE[15], 1);
  assert.equal(NF4_CODE[1], Math.fround(-0.6961928009986877));
  assert.equal(NF4_CODE[8], Math.fround(0.07958029955625534));
  assert.equal(NF4_CODE[14], Math.fround(0.7229568362236023));
  for (let i = 1; i < 16; i++) assert.ok(NF4_CODE[i]! > NF4_CODE[i - 1]!);
  assert.equal(NF4_BLOCK_SIZE, 64);
  assert.equal(ABSMAX_BLOCK_SIZE, 256);
});

test('the dynamic 8-bit map is bitsandbytes create_dynamic_map(signed=True): 127 +- pairs, 0 and 1', () => {
  assert.equal(DYNAMIC_CODE.length, 256);
  for (let i = 1; i < 256; i++) assert.ok(DYNAMIC_CODE[i]! > DYNAMIC_CODE[i - 1]!);
  assert.equal(DYNAMIC_CODE[127], 0);
  assert.equal(DYNAMIC_CODE[255], 1);
  // top decade: boundaries linspace(0.1, 1, 65), largest midpoint (1 + 0.9859375) / 2
  assert.equal(DYNAMIC_CODE[254], Math.fround(0.99296875));
  assert.equal(DYNAMIC_CODE[0], -Math.fround(0.99296875));
  // lowest decade: one midpoint (0.1 + 1) / 2 times 1e-6
  assert.ok(Math.abs(DYNAMIC_CODE[128]! - 0.55e-6) < 1e-12);
  for (let i = 0; i < 127; i++) assert.equal(DYNAMIC_CODE[i], -DYNAMIC_CODE[254 - i]!);
});

test('packing: two codes per byte, first element in the high nibble', () => {
  // one block with absmax 1: the values are code points, so their indices are known
  const x = Float32Array.of(1, -1, 0, NF4_CODE[8]!, NF4_CODE[3]!, NF4_CODE[12]!, 0.52);
  const q = quantizeNf4(x, { doubleQuant: false });
  assert.deepEqual([...q.packed], [0xf0, 0x78, 0x3c, 0xd0]); // 0.52 -> nearest 0.5626 (13); odd tail low nibble 0
  assert.deepEqual([...x].map((_, i) => nf4Index(q, i)), [15, 0, 7, 8, 3, 12, 13]);
  assert.deepEqual(q.absmax, Float32Array.of(1));
  assert.equal(q.packed.length, 4);
});

test('blocks of 64 each with its own absmax; exact code points come back exactly', () => {
  const n = 64 * 3 + 10; // a partial last block
  const x = new Float32Array(n);
  const scale = [0.5, 3, 0.01, 7].map(Math.fround);
  // (i * 5) % 16 visits every code in each full block; the partial block gets a -1 to set its absmax
  for (let i = 0; i < n; i++) x[i] = Math.fround(NF4_CODE[(i * 5) % 16]! * scale[Math.floor(i / 64)]!);
  x[n - 1] = -scale[3]!;
  const q = quantizeNf4(x, { doubleQuant: false });
  assert.deepEqual([...q.absmax!], scale);
  const d = dequantizeNf4(q);
  for (let i = 0; i < n; i++) assert.equal(d[i], x[i], `element ${i}`);
});

test('each value gets the nearest code, so the error is within half a code gap times absmax', () => {
  const x = gaussian(64 * 40 + 32, 7);
  const q = quantizeNf4(x, { doubleQuant: false });
  const d = dequantizeNf4(q);
  for (let i = 0; i < x.length; i++) {
    const a = q.absmax![Math.floor(i / 64)]!;
    const r = x[i]! / a;
    const chosen = Math.abs(r - NF4_CODE[nf4Index(q, i)]!);
    for (let k = 0; k < 16; k++) assert.ok(chosen <= Math.abs(r - NF4_CODE[k]!) + 1e-6, `element ${i}: code ${k} is nearer`);
    assert.ok(Math.abs(d[i]! - x[i]!) <= NF4_MAX_HALF_GAP * a * (1 + 1e-6), `element ${i}`);
  }
});

test('double quantisation: 8-bit absmax codes in blocks of 256 around their mean, within the map\'s resolution', () => {
  const n = 64 * 600; // 600 blocks: 3 second-level blocks, the last one partial
  const x = gaussian(n, 3);
  for (let i = 0; i < n; i++) x[i]! *= 1 + (i % 977) / 300; // absmax varies across blocks
  const plain = quantizeNf4(x, { doubleQuant: false });
  const q = quantizeNf4(x);
  assert.equal(q.absmax, null);
  const nested = q.nested!;
  assert.equal(nested.codes.length, 600);
  assert.equal(nested.scales.length, 3);
  assert.deepEqual(q.packed, plain.packed); // the 4-bit codes do not depend on how absmax is stored
  let mean = 0;
  for (const a of plain.absmax!) mean += a / 600;
  assert.ok(Math.abs(nested.offset - mean) < 1e-5 * mean);
  const scales = nf4BlockScales(q);
  for (let b = 0; b < 600; b++) {
    const j = Math.floor(b / 256);
    let maxCentred = 0;
    for (let k = j * 256; k < Math.min(600, (j + 1) * 256); k++) maxCentred = Math.max(maxCentred, Math.abs(plain.absmax![k]! - mean));
    assert.ok(Math.abs(nested.scales[j]! - maxCentred) < 1e-5 * maxCentred + 1e-7);
    assert.ok(Math.abs(scales[b]! - plain.absmax![b]!) <= DYNAMIC_MAX_HALF_GAP * nested.scales[j]! + 1e-6, `block ${b}`);
  }
  // dequantisation uses the decoded scales
  const d = dequantizeNf4(q);
  for (let i = 0; i < n; i += 37) assert.equal(d[i], Math.fround(NF4_CODE[nf4Index(q, i)]! * scales[Math.floor(i / 64)]!));
});

test('Gaussian weights: relative RMS error of NF4 is what 16 levels give (about 0.1)', () => {
  const x = gaussian(64 * 256, 11);
  const d = dequantizeNf4(quantizeNf4(x));
  let se = 0;
  let ss = 0;
  for (let i = 0; i < x.length; i++) {
    se += (d[i]! - x[i]!) ** 2;
    ss += x[i]! ** 2;
  }
  const rel = Math.sqrt(se / ss);
  assert.ok(rel > 0.05 && rel < 0.13, `relative RMS error ${rel}`);
});

test('stored size: 0.5 byte per weight plus ~0.127 bit of constants per weight', () => {
  const n = 256 * 512;
  const q = quantizeNf4(gaussian(n, 5));
  const bitsPerWeight = (nf4StoredBytes(q) * 8) / n;
  // 4 bits + 8/64 (absmax codes) + 32/(64*256) (second-level scales) + the offset
  assert.ok(Math.abs(bitsPerWeight - (4 + 8 / 64 + 32 / (64 * 256))) < 1e-3, `${bitsPerWeight} bits per weight`);
  const single = quantizeNf4(gaussian(n, 5), { doubleQuant: false });
  assert.equal((nf4StoredBytes(single) * 8) / n, 4 + 32 / 64);
});

test('an all-zero block stores zeros and comes back as zeros', () => {
  const x = new Float32Array(128);
  x[100] = 2;
  const d = dequantizeNf4(quantizeNf4(x, { doubleQuant: false }));
  assert.equal(d[100], 2);
  assert.ok(d.every((v, i) => i === 100 || v === 0));
});
