// Rng: determinism per seed, exact resume from a saved state (including a pending normal), and
// sane distributions.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Rng, randn } from '../../src/tensor/index.ts';

test('same seed, same numbers; different seeds differ', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const xa = Array.from({ length: 5 }, () => a.nextUint32());
  assert.deepEqual(xa, Array.from({ length: 5 }, () => b.nextUint32()));
  assert.notDeepEqual(xa, Array.from({ length: 5 }, () => c.nextUint32()));
});

test('a state saved mid-stream (with a pending Box-Muller spare) resumes exactly, through JSON', () => {
  const r = new Rng(7);
  r.uniform();
  r.normal(); // leaves the spare pending
  const saved = JSON.parse(JSON.stringify(r.getState()));
  const expect = [r.normal(), r.uniform(), r.int(1000), r.normal()];
  const resumed = Rng.fromState(saved);
  assert.deepEqual([resumed.normal(), resumed.uniform(), resumed.int(1000), resumed.normal()], expect);
});

test('uniform is in [0, 1) with mean 1/2; normal has mean 0 and variance 1', () => {
  const r = new Rng(1);
  const n = 20000;
  let su = 0;
  let sn = 0;
  let sn2 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    assert.ok(u >= 0 && u < 1);
    su += u;
    const z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  // 5 standard errors
  assert.ok(Math.abs(su / n - 0.5) < 5 * Math.sqrt(1 / 12 / n));
  assert.ok(Math.abs(sn / n) < 5 / Math.sqrt(n));
  assert.ok(Math.abs(sn2 / n - 1) < 5 * Math.sqrt(2 / n));
});

test('randn with an Rng is reproducible; shuffle is a permutation', () => {
  const a = randn([4], { rng: new Rng(3) }).toFloat32Array();
  const b = randn([4], { rng: new Rng(3) }).toFloat32Array();
  assert.deepEqual(a, b);
  const items = [...Array(20).keys()];
  const shuffled = new Rng(5).shuffle([...items]);
  assert.notDeepEqual(shuffled, items);
  assert.deepEqual([...shuffled].sort((x, y) => x - y), items);
});
