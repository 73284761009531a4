// The caching allocator's graph pools (src/backends/cuda/allocator.ts) on a counting fake device:
// during capture allocations come from the pool, then from the shared cache, and only then from
// the device; blocks freed during capture (wherever they came from) join the pool; after capture
// the pool's blocks are never handed out to others, so replays find them; dispose returns them.
// (cuda-allocator.test.ts checks the same rules under random traffic.)

import assert from 'node:assert/strict';
import test from 'node:test';
import { CachingAllocator, SMALL_MAX, type DeviceMemory } from '../../src/backends/cuda/allocator.ts';

const MiB = 1024 * 1024;

function fakeDevice(): DeviceMemory & { allocs: number; frees: number } {
  let next = 0x10000000;
  const d = {
    allocs: 0,
    frees: 0,
    memAlloc(bytes: number): number {
      d.allocs++;
      const p = next;
      next += bytes;
      return p;
    },
    memFree(): void {
      d.frees++;
    },
    memInfo: () => ({ free: 1 << 30, total: 1 << 30 }),
  };
  return d;
}

const what = () => 'test';

test('a warm cache serves the capture without the device; blocks freed during capture are reused inside it', () => {
  const dev = fakeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const warm = [a.alloc(4 * MiB, what), a.alloc(4 * MiB, what), a.alloc(1000, what)];
  for (const b of warm) a.release(b);
  const allocs = dev.allocs;
  const pool = a.beginCapture();
  const x = a.alloc(4 * MiB, what);
  a.release(x); // freed during capture: back to the pool
  const y = a.alloc(4 * MiB, what);
  assert.equal(y.ptr, x.ptr, 'stream-ordered reuse inside the capture');
  const z = a.alloc(4 * MiB, what);
  const s = a.alloc(1000, what);
  a.endCapture();
  assert.equal(dev.allocs, allocs, 'no cuMemAlloc during capture');
  assert.deepEqual(new Set(pool.blocks), new Set([y, z, s]));
  assert.equal(a.stats().graphPoolBytes, 2 * 4 * MiB + s.bytes);
  // after capture: the pool's blocks, live or freed, are not handed out again
  a.release(z);
  const outside = a.alloc(4 * MiB, what);
  assert.ok(![y.ptr, z.ptr].includes(outside.ptr), 'a freed pool block stays the graph\'s');
  a.release(outside);
  a.release(y);
  a.release(s);
  a.disposePool(pool);
  assert.equal(a.stats().graphPoolBytes, 0);
  const again = Array.from({ length: 5 }, () => a.alloc(4 * MiB, what));
  assert.equal(dev.allocs, allocs, 'the disposed pool\'s blocks are in the shared cache again, merged with the rest of their segment');
  for (const b of again) a.release(b);
  a.emptyCache();
  assert.equal(dev.frees, dev.allocs, 'every segment goes back to the driver');
});

test('blocks allocated or freed during capture belong to the pool; the rest of a segment made during capture stays shared', () => {
  const dev = fakeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const input = a.alloc(2 * MiB, what); // allocated before capture, freed inside it
  const pool = a.beginCapture();
  const small = a.alloc(SMALL_MAX / 2, what); // a fresh segment: the capture's cache was cold
  a.release(input);
  a.endCapture();
  assert.ok(pool.blocks.has(input), 'a block freed during capture may still be read by the graph');
  assert.ok(pool.blocks.has(small));
  assert.equal(pool.blocks.size, 2);
  assert.notEqual(a.alloc(2 * MiB, what).ptr, input.ptr);
  assert.equal(a.alloc(SMALL_MAX / 2, what).ptr, small.ptr + SMALL_MAX / 2, 'the rest of the new segment');
  // a live output outlives its graph: after dispose it is an ordinary block, freed to the cache
  a.disposePool(pool);
  a.release(small);
  assert.equal(a.alloc(SMALL_MAX / 2, what).ptr, small.ptr);
});

test('out of memory during capture does not empty the cache and says why', () => {
  let left = 8 * MiB;
  const dev: DeviceMemory = {
    memAlloc: (bytes) => (bytes > left ? null : ((left -= bytes), 0x1000 + left)),
    memFree: () => assert.fail('cuMemFree during capture'),
    memInfo: () => ({ free: left, total: 8 * MiB }),
  };
  const a = new CachingAllocator(dev, 'fake');
  a.release(a.alloc(6 * MiB, what)); // cached, too small for the request below
  a.beginCapture();
  assert.throws(() => a.alloc(7 * MiB, what), /during CUDA graph capture/);
  a.endCapture();
});

test('two graphs share one pool: the second capture reuses what the first freed, and the pool goes back with the last graph', () => {
  const dev = fakeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const pool = a.beginCapture();
  const scratch = a.alloc(8 * MiB, what);
  const out1 = a.alloc(1000, what); // the first graph's output, kept
  a.release(scratch);
  a.endCapture();
  const allocs = dev.allocs;
  assert.equal(a.beginCapture(pool), pool);
  const scratch2 = a.alloc(8 * MiB, what);
  assert.equal(scratch2.ptr, scratch.ptr, 'the first graph\'s scratch serves the second');
  assert.notEqual(a.alloc(1000, what).ptr, out1.ptr, 'a live output of the first graph is not handed out');
  a.release(scratch2);
  a.endCapture();
  assert.equal(dev.allocs, allocs, 'no device memory for the second graph');
  assert.equal(pool.graphs, 2);
  a.disposePool(pool);
  assert.equal(pool.disposed, false, 'the second graph still holds the pool');
  assert.ok(a.stats().graphPoolBytes > 0);
  a.disposePool(pool);
  assert.equal(pool.disposed, true);
  assert.equal(a.stats().graphPoolBytes, 0);
  assert.throws(() => a.beginCapture(pool), /disposed graph pool/);
});

test('a graph that frees another pool\'s output keeps that pool as long as its own, cycles included', () => {
  const dev = fakeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const p1 = a.beginCapture();
  const out1 = a.alloc(3 * MiB, what); // graph 1's output
  a.endCapture();
  const p2 = a.beginCapture();
  a.release(out1); // consumed by graph 2, which may touch it on every replay
  const out2 = a.alloc(3 * MiB, what);
  a.endCapture();
  assert.ok(p1.blocks.has(out1), 'the block stays with its pool');
  a.disposePool(p1);
  assert.equal(p1.disposed, false, 'graph 2 still touches graph 1\'s block');
  assert.notEqual(a.alloc(3 * MiB, what).ptr, out1.ptr);
  const p3 = a.beginCapture(p1); // p1 reused while kept: p1 and p2 now hold each other
  assert.equal(p3, p1);
  a.release(out2);
  a.endCapture();
  a.disposePool(p2);
  assert.equal(p2.disposed, false, 'p1 has a graph and holds p2');
  a.disposePool(p1);
  assert.ok(p1.disposed && p2.disposed, 'no graph left: both go');
  assert.equal(a.stats().graphPoolBytes, 0);
});
