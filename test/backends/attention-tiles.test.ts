// The CUDA attention's worst-case grids (tileBound): for any packing of B rows of T tokens into
// samples, the segments (cut at row ends, as src/backends/cpu/attention.ts cuts them) and their
// tiles never outnumber the bound computed from the shapes and the number of boundaries alone, so a
// grid sized by it covers every step, and zero-length padding samples change no real tile.

import test from 'node:test';
import assert from 'node:assert/strict';
import { segments } from '../../src/backends/cpu/attention.ts';
import { tileBound } from '../../src/backends/cuda/attention.ts';
import { padCuSeqlens } from '../../src/models/inputs.ts';

const STEPS = [8, 32, 64]; // the tile heights of the two kernel sets (CUDA-core rows, keys; tensor-core rows, keys)

function tilesOf(segs: Int32Array, step: number): number {
  let n = 0;
  for (let g = 0; g < segs.length; g += 4) n += Math.ceil(segs[g + 2]! / step);
  return n;
}

/** Boundaries of samples with lengths drawn from [1, maxLen] until B*T tokens are covered. */
function packing(B: number, T: number, maxLen: number, rand: () => number): Int32Array {
  const cu = [0];
  while (cu[cu.length - 1]! < B * T) cu.push(Math.min(B * T, cu[cu.length - 1]! + 1 + Math.floor(rand() * maxLen)));
  return Int32Array.from(cu);
}

function check(B: number, T: number, cu: Int32Array | null): void {
  const segs = segments(B, T, T, cu);
  for (const step of STEPS) {
    const bound = tileBound(B, T, cu?.length ?? 0, step);
    assert.ok(segs.length / 4 <= bound.segs, `B=${B} T=${T} ${segs.length / 4} segments > bound ${bound.segs}`);
    const n = tilesOf(segs, step);
    assert.ok(n <= bound.tiles, `B=${B} T=${T} step ${step}: ${n} tiles > bound ${bound.tiles}`);
    if (cu === null) assert.equal(n, bound.tiles, 'whole rows: the bound is exact');
  }
}

test('tileBound covers whole rows, one sample per row, one sample over all rows', () => {
  for (const [B, T] of [[1, 1], [1, 64], [2, 65], [3, 2048], [4, 100]] as const) {
    check(B, T, null);
    check(B, T, Int32Array.from({ length: B + 1 }, (_, i) => i * T));
    check(B, T, Int32Array.from([0, B * T]));
  }
});

test('tileBound covers many small samples, samples across row ends, and every token its own sample', () => {
  let s = 12345;
  const rand = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (const [B, T] of [[1, 200], [2, 97], [3, 128], [8, 64]] as const) {
    for (const maxLen of [1, 2, 5, 9, 63, 65, 300]) check(B, T, packing(B, T, maxLen, rand));
    check(B, T, Int32Array.from({ length: B * T + 1 }, (_, i) => i));
  }
});

test('padded cuSeqlens: zero-length samples add no segment, and the bound grows only with the capacity', () => {
  const cu = Int32Array.from([0, 7, 9, 70, 128, 190, 256]);
  const padded = padCuSeqlens(cu);
  assert.equal(padded.length, 16);
  assert.deepEqual([...padded.subarray(0, cu.length)], [...cu]);
  assert.ok(padded.subarray(cu.length).every((v) => v === 256));
  assert.deepEqual(segments(2, 128, 128, padded), segments(2, 128, 128, cu));
  assert.equal(padCuSeqlens(new Int32Array(17)).length, 32);
  check(2, 128, padded);
});
