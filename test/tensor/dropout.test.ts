// dropout: the Philox4x32-10 generator against the known-answer vectors of its authors (Random123,
// kat_vectors), the mask layout (element i = word i % 4 of counter i / 4), the keep rate and
// pairwise independence within statistical bounds, inverted scaling, the backward (the same mask,
// regenerated), a base seed per step and a number per call (a saved stream state replays the masks;
// the CPU side of the per-step seed buffer), eval identity.

import test from 'node:test';
import assert from 'node:assert/strict';
import { philox4x32 } from '../../src/backends/cpu/dropout.ts';
import { DropoutStream, Rng, dropout, sum, tensor } from '../../src/tensor/index.ts';

/** Half-width of the acceptance band, in standard deviations (a false alarm ~1e-9 per check). */
const SIGMAS = 6;

test('Philox4x32-10 gives the Random123 known answers', () => {
  const kat: [number[], [number, number], number[]][] = [
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
  ];
  for (const [ctr, [k0, k1], want] of kat) {
    const c = Uint32Array.from(ctr);
    philox4x32(c, k0, k1);
    assert.deepEqual([...c], want);
  }
});

test('the mask: element i kept when word i % 4 of Philox([i / 4, call]) >= p * 2^32, kept ones scaled by 1/(1-p)', () => {
  const rng = new Rng(5);
  const twin = Rng.fromState(rng.getState());
  const n = 1003; // not a multiple of 4
  const x = tensor(new Float32Array(n).map((_, i) => 1 + (i % 7)), [17, 59]);
  const p = 0.3;
  const stream = new DropoutStream(rng);
  const ys = [0, 1, 2].map(() => dropout(x, p, { stream }).toFloat32Array()); // calls 0, 1, 2 of the step
  const [k0, k1] = [twin.nextUint32(), twin.nextUint32()]; // the step's base seed, drawn at the first call
  assert.deepEqual(rng.getState(), twin.getState());
  const scale = Math.fround(1 / (1 - p));
  const c = new Uint32Array(4);
  ys.forEach((y, call) => {
    for (let i = 0; i < n; i++) {
      c.set([Math.floor(i / 4), 0, call, 0]);
      philox4x32(c, k0, k1);
      const kept = c[i % 4]! >= Math.floor(p * 2 ** 32);
      assert.equal(y[i], kept ? Math.fround((1 + (i % 7)) * scale) : 0, `call ${call} element ${i}`);
    }
  });
});

test('keep rate is 1 - p and neighbours are independent, within statistical bounds', () => {
  const n = 1 << 20;
  const x = tensor(new Float32Array(n).fill(1), [n]);
  for (const p of [0.1, 0.5, 0.9]) {
    const y = dropout(x, p, { stream: new DropoutStream(new Rng(11)) }).toFloat32Array();
    let kept = 0;
    let bothKept = 0; // pairs (2j, 2j+1): inside and across the groups of 4
    for (let i = 0; i < n; i++) if (y[i] !== 0) kept++;
    for (let i = 0; i < n; i += 2) if (y[i] !== 0 && y[i + 1] !== 0) bothKept++;
    const q = 1 - p;
    assert.ok(Math.abs(kept - n * q) <= SIGMAS * Math.sqrt(n * p * q), `p=${p}: kept ${kept} of ${n}`);
    const pairs = n / 2;
    assert.ok(Math.abs(bothKept - pairs * q * q) <= SIGMAS * Math.sqrt(pairs * q * q * (1 - q * q)), `p=${p}: ${bothKept} pairs both kept`);
  }
});

test('successive calls and steps draw new masks; a saved stream state replays them', () => {
  const stream = new DropoutStream(new Rng(9));
  const x = tensor(new Float32Array(4096).fill(1), [4096]);
  stream.nextStep();
  const saved = stream.getState();
  const a = dropout(x, 0.5, { stream }).toFloat32Array();
  const b = dropout(x, 0.5, { stream }).toFloat32Array();
  assert.notDeepEqual(a, b);
  stream.nextStep(); // the next step: call 0 again, under a new base seed
  const c = dropout(x, 0.5, { stream }).toFloat32Array();
  assert.notDeepEqual(c, a);
  // a stream restored in the middle of the first step (a resume, or a recomputation) replays it
  const replay = new DropoutStream(new Rng(123));
  dropout(x, 0.5, { stream: replay }); // its own seed uploaded first: setState must rewrite the buffer
  replay.setState(saved);
  assert.deepEqual(dropout(x, 0.5, { stream: replay }).toFloat32Array(), a);
  assert.deepEqual(dropout(x, 0.5, { stream: replay }).toFloat32Array(), b);
  replay.nextStep();
  assert.deepEqual(dropout(x, 0.5, { stream: replay }).toFloat32Array(), c);
  assert.deepEqual(stream.getState(), replay.getState());
});

test('backward multiplies by the same mask; eval and p = 0 are the identity', () => {
  const w = tensor(new Float32Array(999).fill(1), [999], { requiresGrad: true });
  const y = dropout(w, 0.25, { stream: new DropoutStream(new Rng(2)) });
  sum(y).backward();
  // d sum(x * m) / dx = m, which is y itself at x = 1
  assert.deepEqual(w.grad!.toFloat32Array(), y.toFloat32Array());
  assert.equal(dropout(w, 0.25, { training: false }), w);
  assert.equal(dropout(w, 0), w);
  assert.throws(() => dropout(w, 1), /p must be in \[0, 1\)/);
});

test('bfloat16: kept values are x * scale rounded once', () => {
  const x = tensor(new Float32Array(64).map((_, i) => 0.1 * (i + 1)), [64], { dtype: 'bfloat16' });
  const xv = x.toFloat32Array();
  const y = dropout(x, 0.1, { stream: new DropoutStream(new Rng(4)) });
  assert.equal(y.dtype, 'bfloat16');
  const yv = y.toFloat32Array();
  const s = Math.fround(1 / 0.9);
  const ref = tensor(new Float32Array(64).map((_, i) => Math.fround(xv[i]! * s)), [64], { dtype: 'bfloat16' }).toFloat32Array();
  for (let i = 0; i < 64; i++) assert.ok(yv[i] === 0 || yv[i] === ref[i], `element ${i}: ${yv[i]} vs ${ref[i]}`);
});
