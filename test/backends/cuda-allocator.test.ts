// The caching allocator (src/backends/cuda/allocator.ts) on a fake device that hands out address
// ranges: requests cut from shared segments, best fit, freed neighbours merging back, the driver
// called only when the cache cannot serve, and under random traffic (graph captures included) the
// books always balancing: live blocks disjoint and inside live segments, allocated and reserved
// bytes equal to what is held, and everything merging back into whole segments at the end.

import assert from 'node:assert/strict';
import test from 'node:test';
import { CachingAllocator, SMALL_MAX, type Block, type DeviceMemory, type GraphPool } from '../../src/backends/cuda/allocator.ts';
import { Rng } from '../../src/tensor/index.ts';

const MiB = 1024 * 1024;
const what = () => 'test';

/** Address ranges from a counter (never reused, so a stale pointer shows); `limit` bytes at once. */
function rangeDevice(limit = Infinity) {
  let next = 0x10000000;
  let used = 0;
  const segments = new Map<number, number>(); // ptr -> bytes
  const d = {
    segments,
    allocs: 0,
    memAlloc(bytes: number): number | null {
      if (used + bytes > limit) return null;
      d.allocs++;
      used += bytes;
      const p = next;
      next += bytes + 4096; // a gap: blocks of two segments are never adjacent
      segments.set(p, bytes);
      return p;
    },
    memFree(ptr: number): void {
      const bytes = segments.get(ptr);
      assert.ok(bytes !== undefined, `cuMemFree of ${ptr.toString(16)}, not a segment`);
      used -= bytes;
      segments.delete(ptr);
    },
    memInfo: () => ({ free: limit - used, total: limit }),
  } satisfies DeviceMemory & Record<string, unknown>;
  return d;
}

test('medium requests share a 20 MiB segment: seven 2.75 MiB adapters in one cuMemAlloc', () => {
  const dev = rangeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const size = 2.75 * MiB;
  const held = Array.from({ length: 7 }, () => a.alloc(size, what));
  assert.equal(dev.allocs, 1);
  assert.deepEqual([...dev.segments.values()], [20 * MiB]);
  assert.equal(a.stats().allocatedBytes, 20 * MiB, 'the seventh takes the last 0.75 MiB too: a rest of <= 1 MiB is not cut off');
  for (let i = 1; i < 7; i++) assert.equal(held[i]!.ptr, held[i - 1]!.ptr + size, 'cut in address order');
  a.alloc(size, what);
  assert.equal(dev.allocs, 2, 'the eighth does not fit the first segment (0.75 MiB left)');
});

test('requests round to 512 B; small ones come from 2 MiB segments; a large one gets its own segment rounded to 2 MiB', () => {
  const dev = rangeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const s1 = a.alloc(1, what);
  const s2 = a.alloc(513, what);
  assert.equal(s1.bytes, 512);
  assert.equal(s2.bytes, 1024);
  assert.equal(s2.ptr, s1.ptr + 512);
  const big = a.alloc(43 * MiB + 1, what);
  assert.equal(big.bytes, 44 * MiB, 'the rest of its segment is under 1 MiB: not cut off');
  assert.deepEqual([...dev.segments.values()], [2 * MiB, 44 * MiB]);
  a.release(big);
  const part = a.alloc(40 * MiB, what);
  assert.equal(part.ptr, big.ptr, 'a later request of nearly its size splits the cached segment');
  assert.equal(part.bytes, 40 * MiB, 'the rest (4 MiB) stays cached');
  a.release(part);
  assert.equal(a.alloc(44 * MiB, what).ptr, big.ptr, 'and merges back');
  assert.equal(dev.allocs, 2);
  assert.equal(a.alloc(SMALL_MAX, what).ptr, s2.ptr + 1024, 'small requests never cut large segments');
});

test('best fit: the smallest cached block that is large enough, whatever the order they were freed in', () => {
  const dev = rangeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const [x, , y, , z] = [30, 1, 12, 1, 16].map((n) => a.alloc(n * MiB, what));
  for (const b of [x!, y!, z!]) a.release(b);
  assert.equal(a.alloc(11 * MiB, what).ptr, y!.ptr);
  assert.equal(a.alloc(15 * MiB, what).ptr, z!.ptr);
  assert.equal(a.alloc(28 * MiB, what).ptr, x!.ptr);
});

test('kinds stay apart: medium requests do not cut a free big block, nor big ones a block 1/8 larger', () => {
  const dev = rangeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const big = a.alloc(60 * MiB, what);
  a.release(big);
  assert.notEqual(a.alloc(3 * MiB, what).ptr, big.ptr, 'a long-lived medium tensor would pin the big block');
  assert.notEqual(a.alloc(53 * MiB, what).ptr, big.ptr, '60 MiB is more than 1/8 above 53 MiB');
  assert.equal(a.alloc(54 * MiB, what).ptr, big.ptr, 'within 1/8: cut');
  assert.equal(dev.segments.size, 3);
});

test('when the driver has no room, any cached block large enough is cut, whatever its kind', () => {
  const dev = rangeDevice(68 * MiB);
  const a = new CachingAllocator(dev, 'fake');
  const big = a.alloc(64 * MiB, what);
  a.release(big);
  a.alloc(57 * MiB, what); // keeps the big segment from going back to the driver; 7 MiB of it stay free
  const m = a.alloc(6 * MiB, what); // no room for a medium segment (20 MiB) or one of its own (6 MiB)
  assert.equal(m.ptr, big.ptr + 57 * MiB);
  assert.equal(dev.segments.size, 1);
});

test('freed neighbours merge back into the whole segment, which emptyCache returns to the driver', () => {
  const dev = rangeDevice();
  const a = new CachingAllocator(dev, 'fake');
  const held = Array.from({ length: 6 }, () => a.alloc(3 * MiB, what));
  for (const i of [1, 4, 0, 5, 3, 2]) a.release(held[i]!);
  assert.equal(a.alloc(10 * MiB, what).ptr, held[0]!.ptr, 'one free block of 20 MiB again');
  assert.equal(a.alloc(10 * MiB, what).ptr, held[0]!.ptr + 10 * MiB);
  assert.throws(() => a.release(held[2]!), /freed twice/);
  const b = a.alloc(5 * MiB, what);
  a.release(b);
  a.emptyCache();
  assert.equal(dev.segments.size, 1, 'the segment with a live block stays');
  assert.equal(a.stats().reservedBytes, 20 * MiB);
});

test('out of memory: cached segments go back to the driver first, then a segment of the request\'s own size is tried', () => {
  const dev = rangeDevice(26 * MiB);
  const a = new CachingAllocator(dev, 'fake');
  a.release(a.alloc(24 * MiB, what));
  const x = a.alloc(3 * MiB, what); // cut from the cached 24 MiB segment
  a.release(x);
  const y = a.alloc(26 * MiB, what); // the cached 24 MiB segment must go first
  assert.equal(dev.segments.size, 1);
  a.release(y);
  a.emptyCache();
  const held = a.alloc(22 * MiB, what);
  const fits = a.alloc(3 * MiB, what); // 20 MiB shared segment does not fit in 4 MiB; 4 MiB of its own does
  assert.deepEqual([...dev.segments.values()], [22 * MiB, 4 * MiB]);
  assert.throws(() => a.alloc(3 * MiB, what), /out of memory on fake: allocating 3\.0 MiB for test; the GPU has 0 B free of 26\.0 MiB/);
  a.release(held);
  a.release(fits);
});

test('random traffic with graph captures keeps the books: live blocks disjoint, inside live segments, counted exactly; all merges back', () => {
  for (const seed of [1, 2, 3]) {
    const rng = new Rng(seed);
    const dev = rangeDevice();
    const a = new CachingAllocator(dev, 'fake');
    const live = new Map<Block, number>(); // block -> bytes asked
    const pools: GraphPool[] = [];
    const graphs = new Map<GraphPool, number>(); // graphs captured into each pool
    const touched = new Map<GraphPool, [number, number][]>(); // address ranges a pool's graphs may touch
    const touch = (p: GraphPool | null, b: Block) => {
      if (p) touched.set(p, [...(touched.get(p) ?? []), [b.ptr, b.ptr + b.bytes]]);
    };
    const sizes = [256, 4000, 100_000, SMALL_MAX, 1.5 * MiB, 2.75 * MiB, 9 * MiB, 10 * MiB + 1, 43 * MiB];
    const check = () => {
      const ranges = [...live.keys()].map((b) => [b.ptr, b.ptr + b.bytes] as const).sort((p, q) => p[0] - q[0]);
      for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i - 1]![1] <= ranges[i]![0], `seed ${seed}: live blocks overlap`);
      for (const [b, asked] of live) {
        assert.ok(b.bytes >= asked);
        assert.ok([...dev.segments].some(([p, n]) => b.ptr >= p && b.ptr + b.bytes <= p + n), 'a live block outside every segment');
      }
      const st = a.stats();
      assert.equal(st.allocatedBytes, [...live.keys()].reduce((s, b) => s + b.bytes, 0));
      assert.equal(st.reservedBytes, [...dev.segments.values()].reduce((s, n) => s + n, 0));
      assert.ok(st.peakAllocatedBytes >= st.allocatedBytes && st.peakReservedBytes >= st.reservedBytes);
    };
    for (let round = 0; round < 30; round++) {
      const capture = round % 3 === 1;
      const pool = capture ? a.beginCapture(rng.uniform() < 0.5 && pools.length > 0 ? pools[0] : undefined) : null;
      for (let op = 0; op < 60; op++) {
        if (live.size > 0 && rng.uniform() < 0.45) {
          const b = [...live.keys()][rng.int(live.size)]!;
          live.delete(b);
          touch(pool, b);
          a.release(b);
        } else {
          const asked = Math.max(1, Math.round(sizes[rng.int(sizes.length)]! * (0.5 + rng.uniform())));
          const b = a.alloc(asked, what);
          for (const [p, ranges] of touched) {
            // a graph may reuse its own pool's memory, and the memory of a pool whose output another
            // graph consumed (the rule of shared pools: outputs are read before the next graph runs)
            if (p === pool || p.disposed || (pool && p.holds.has(pool))) continue;
            assert.ok(!ranges.some(([lo, hi]) => b.ptr < hi && lo < b.ptr + b.bytes), `seed ${seed} round ${round}: memory a graph may touch handed out to another`);
          }
          touch(pool, b);
          live.set(b, asked);
        }
        check();
      }
      if (pool) {
        a.endCapture();
        if (!pools.includes(pool)) pools.push(pool);
        graphs.set(pool, (graphs.get(pool) ?? 0) + 1);
      }
      if (round % 7 === 6 && pools.length > 0) {
        const p = pools.shift()!;
        for (let g = graphs.get(p)!; g > 0; g--) a.disposePool(p);
        a.emptyCache();
        check();
      }
    }
    for (const p of pools) for (let g = graphs.get(p)!; g > 0; g--) a.disposePool(p);
    assert.ok([...touched.keys()].every((p) => p.disposed), 'a pool outlived every graph and every pool holding it');
    for (const b of live.keys()) a.release(b);
    live.clear();
    a.emptyCache();
    check();
    assert.equal(dev.segments.size, 0, `seed ${seed}: every segment merged back whole and returned`);
    assert.equal(a.stats().graphPoolBytes, 0);
  }
});
