// The caching allocator for device memory (the design of PyTorch's CUDACachingAllocator, for one
// stream). Memory comes from the driver in segments; a segment is cut into blocks, and a freed
// block goes back to a cache, merged with free neighbours, to be cut again for later requests
// without calling the driver: a training step that repeats the same shapes allocates nothing from
// the driver after the first step.
//   sizes:    every request rounds up to 512 B.
//   small:    requests <= 1 MiB are cut from 2 MiB segments.
//   medium:   requests <= 10 MiB are cut from 20 MiB segments.
//   big:      larger requests get a segment of their own rounded up to 2 MiB (the driver's page);
//             once freed it serves big requests of nearly its size (> 8/9 of it, < 20 MiB less).
//   best fit: the smallest cached block of the request's kind that is large enough; the rest of it
//             stays cached when worth keeping (>= 512 B of a small block, > 1 MiB of another).
// Cutting segments matters for memory: the driver gives whole 2 MiB pages, so without it a LoRA
// adapter of 2.75 MiB (and its gradient and two AdamW moments) would each hold 4 MiB. Keeping the
// kinds apart (as PyTorch's max_split_size) keeps fragments down: a long-lived tensor never lands
// inside a much larger free block and pins it, so the big buffers a step frees serve the next step
// (the Llama-2-7B QLoRA step at 2048 tokens: 8.13 GiB reserved with cutting big blocks for any
// request down to 20 MiB less, 7.85 GiB with near-exact reuse; allocated 7.4 GiB either way).
// When the driver is out of memory the cache's wholly free segments are returned to it and the
// allocation is tried once more (a medium request then also with a segment of its own size), and
// last of all any cached block large enough is cut, whatever its kind, before failing with an
// error that says what was asked, what is free, and what to change. All work runs on one stream,
// so a freed block is safe to reuse at once: later work on it queues behind the work that used it.
// CUDA graphs: while a graph is captured, allocations come from a pool private to it (as PyTorch's
// graph pools): its own free blocks first, then blocks taken out of the shared cache (the part
// asked for; the rest stays shared), and only when both fail a fresh segment (allowed: the capture
// is in relaxed mode; a warm-up run of the captured work before capture leaves the cache holding
// what the capture needs, so it allocates nothing from the driver). Every block freed during
// capture joins the pool, wherever it came from, since the graph's kernels may still touch it.
// After capture the pool's blocks stay reserved by the graph: a pool block freed later goes back to
// the pool, never to the shared cache, so each replay finds its buffers where capture left them
// and nothing else is put there. Blocks merge only with neighbours of the same owner. Disposing of
// the pool hands its free blocks to the shared cache and its live ones (the graph's outputs still
// held) to ordinary ownership. Out of memory during capture does not empty the cache (cuMemFree
// inside a capture may synchronise): the error says so.
// Several graphs may share one pool (as PyTorch's graph_pool_handle), so graphs that never run at
// once do not each reserve their own working memory: a later capture reuses the blocks the earlier
// graphs freed. The rule that makes it safe: a graph's outputs are read before any graph of the
// same pool is launched again (one graph's outputs may lie in another's scratch). A block of one
// pool freed during the capture of another stays with its pool, and that pool is then kept as long
// as the capturing one, since both graphs may touch the block (the same rule then applies to them).
// Not here: pinned host memory, several streams.

import { XtunerError } from '../../errors.ts';

/** What the allocator needs from the device (the driver, or a fake in tests). */
export interface DeviceMemory {
  /** A fresh allocation, or null when out of memory. */
  memAlloc(bytes: number): number | null;
  memFree(ptr: number): void;
  memInfo(): { free: number; total: number };
}

export interface AllocatorStats {
  /** Bytes in live blocks now, and the most there ever were. */
  allocatedBytes: number;
  peakAllocatedBytes: number;
  /** Bytes of segments obtained from the driver now (live + cached), and the peak. */
  reservedBytes: number;
  peakReservedBytes: number;
  /** Allocations served, and how many of them needed the driver. */
  allocations: number;
  deviceAllocations: number;
  /** Bytes held by graph pools, live or free: reserved by their graphs until disposed. */
  graphPoolBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
/** Requests up to this size are small: cut from SMALL_SEGMENTs. */
export const SMALL_MAX = 1 * MiB;
const SMALL_SEGMENT = 2 * MiB;
/** Requests up to this size are medium, cut from MEDIUM_SEGMENTs; larger ones are big. */
export const MEDIUM_MAX = 10 * MiB;
const MEDIUM_SEGMENT = 20 * MiB;
/** A cached big block serves big requests less than this fraction (and than MEDIUM_SEGMENT) smaller. */
const BIG_SLACK = 1 / 8;
const PAGE = 2 * MiB;
const ROUND = 512;

/** The requests a segment was made for (see the header). */
type Kind = 'small' | 'medium' | 'big';
const kindOf = (size: number): Kind => (size <= SMALL_MAX ? 'small' : size <= MEDIUM_MAX ? 'medium' : 'big');

/** A piece of a segment (one cuMemAlloc): live (handed out) or free (cached). Blocks of a segment are linked in address order. */
export class Block {
  prev: Block | null = null;
  next: Block | null = null;
  free = false;
  /** The graph pool holding it (see the header); null: the shared cache. */
  pool: GraphPool | null = null;
  constructor(
    readonly ptr: number,
    public bytes: number,
    readonly kind: Kind,
  ) {}

  /** The whole segment: no neighbours. */
  get wholeSegment(): boolean {
    return this.prev === null && this.next === null;
  }
}

/** Free blocks ordered by size, then address: the best fit is the first one at least as large as asked. */
class FreeSet {
  private readonly sorted: Block[] = [];

  /** The first position whose block is >= (bytes, ptr). */
  private index(bytes: number, ptr: number): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const b = this.sorted[mid]!;
      if (b.bytes < bytes || (b.bytes === bytes && b.ptr < ptr)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(b: Block): void {
    this.sorted.splice(this.index(b.bytes, b.ptr), 0, b);
  }

  delete(b: Block): void {
    const i = this.index(b.bytes, b.ptr);
    if (this.sorted[i] !== b) throw new Error(`CUDA allocator: free block ${b.ptr.toString(16)} missing from its cache`);
    this.sorted.splice(i, 1);
  }

  /** Take out the smallest block of at least `bytes`, if it is smaller than `below`. */
  take(bytes: number, below = Infinity): Block | undefined {
    const i = this.index(bytes, 0);
    return i < this.sorted.length && this.sorted[i]!.bytes < below ? this.sorted.splice(i, 1)[0] : undefined;
  }

  get blocks(): readonly Block[] {
    return this.sorted;
  }
}

/** The free blocks of one owner (the shared cache or a graph pool), by kind. */
class Cache {
  readonly sets: Record<Kind, FreeSet> = { small: new FreeSet(), medium: new FreeSet(), big: new FreeSet() };

  of(b: Block): FreeSet {
    return this.sets[b.kind];
  }

  /** The best fit of the request's kind (a big block less than BIG_SLACK larger), or with `any` of any kind but small. */
  take(size: number, any = false): Block | undefined {
    const kind = kindOf(size);
    if (!any) return this.sets[kind].take(size, kind === 'big' ? Math.min(size * (1 + BIG_SLACK), size + MEDIUM_SEGMENT) : Infinity);
    if (kind === 'small') return undefined;
    const m = this.sets.medium.take(size);
    return m ?? this.sets.big.take(size);
  }
}

/** The blocks of one or more CUDA graphs (see the header). */
export class GraphPool {
  readonly cache = new Cache();
  /** Every block the pool holds, live or free. */
  readonly blocks = new Set<Block>();
  /** Graphs holding the pool. */
  graphs = 0;
  disposed = false;
  /** Other pools whose blocks this pool's graphs freed during capture: kept while this pool is. */
  readonly holds = new Set<GraphPool>();
}

export function formatBytes(n: number): string {
  if (n >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

/** The device has no room for an allocation (after the cache was returned to it, outside a graph capture). */
export class CudaOutOfMemoryError extends XtunerError {
  constructor(message: string, options: { hint?: string }) {
    super(message, options);
    this.name = 'CudaOutOfMemoryError';
  }
}

export class CachingAllocator {
  private readonly shared = new Cache();
  /** Pools not yet handed back. */
  private readonly pools = new Set<GraphPool>();
  /** The pool of the graph being captured: allocations come from it and frees go to it. */
  private capturing: GraphPool | null = null;
  private s: AllocatorStats = {
    allocatedBytes: 0, peakAllocatedBytes: 0, reservedBytes: 0, peakReservedBytes: 0, allocations: 0, deviceAllocations: 0, graphPoolBytes: 0,
  };

  constructor(
    private readonly device: DeviceMemory,
    private readonly deviceName: string,
  ) {}

  /** A block of at least `bytes` (> 0). `what` describes the request for the out-of-memory error. */
  alloc(bytes: number, what: () => string): Block {
    const size = roundUp(bytes, ROUND);
    const pool = this.capturing;
    const b =
      pool?.cache.take(size) ??
      this.shared.take(size) ??
      this.newSegment(size) ??
      // last resort: cut any free block large enough (the pool's first)
      pool?.cache.take(size, true) ??
      this.shared.take(size, true);
    if (!b) throw this.outOfMemory(bytes, what());
    this.split(b, size); // before adopting: the rest stays with its owner
    if (pool && !b.pool) this.adopt(pool, b);
    b.free = false;
    this.s.allocations++;
    this.s.allocatedBytes += b.bytes;
    if (this.s.allocatedBytes > this.s.peakAllocatedBytes) this.s.peakAllocatedBytes = this.s.allocatedBytes;
    return b;
  }

  release(b: Block): void {
    if (b.free) throw new Error(`CUDA allocator: block ${b.ptr.toString(16)} freed twice`);
    this.s.allocatedBytes -= b.bytes;
    const capturing = this.capturing;
    if (capturing && !b.pool) this.adopt(capturing, b);
    // another graph's output, last used by this one: the block stays with its pool, which must now
    // be kept as long as this one (this graph may touch the block on every replay)
    if (capturing && b.pool !== capturing) capturing.holds.add(b.pool!);
    b.free = true;
    this.cacheFree(b);
  }

  /** Start serving allocations from `pool` (default: a fresh one) for the capture that begins; the graph holds the pool. */
  beginCapture(pool: GraphPool = new GraphPool()): GraphPool {
    if (this.capturing) throw new Error('CUDA allocator: a graph capture is already under way');
    if (pool.disposed) throw new Error('CUDA allocator: capturing into a disposed graph pool');
    pool.graphs++;
    this.pools.add(pool);
    this.capturing = pool;
    return pool;
  }

  /** Back to the shared cache for new allocations; the pool keeps its blocks (see the header). */
  endCapture(): void {
    this.capturing = null;
  }

  /**
   * A graph of `pool` is gone (or its capture failed). A pool no graph holds, directly or through
   * the holds of pools that graphs hold, goes back: its free blocks join the shared cache and its
   * live ones (graph outputs still held) become ordinary blocks.
   */
  disposePool(pool: GraphPool): void {
    if (pool.disposed) return;
    if (this.capturing === pool) throw new Error('CUDA allocator: disposing of the pool of the graph being captured');
    if (pool.graphs === 0) throw new Error('CUDA allocator: a graph pool disposed of more often than graphs were captured into it');
    if (--pool.graphs > 0) return;
    const kept = new Set<GraphPool>();
    const visit = (p: GraphPool) => {
      if (kept.has(p)) return;
      kept.add(p);
      for (const h of p.holds) visit(h);
    };
    for (const p of this.pools) if (p.graphs > 0 || p === this.capturing) visit(p);
    for (const p of [...this.pools]) if (!kept.has(p)) this.handBack(p);
  }

  private handBack(pool: GraphPool): void {
    this.pools.delete(pool);
    pool.disposed = true;
    pool.holds.clear();
    const freed = [...pool.blocks].filter((b) => b.free);
    for (const b of freed) {
      pool.cache.of(b).delete(b);
      b.free = false; // out of every cache until cacheFree below: not to be merged before
    }
    for (const b of pool.blocks) {
      b.pool = null;
      this.s.graphPoolBytes -= b.bytes;
    }
    pool.blocks.clear();
    for (const b of freed) {
      b.free = true;
      this.cacheFree(b);
    }
  }

  /** Return every wholly free segment of the shared cache to the driver (graph pools keep theirs). */
  emptyCache(): void {
    if (this.capturing) return; // cuMemFree may synchronise, which a capture forbids
    for (const set of Object.values(this.shared.sets)) {
      for (const b of set.blocks.filter((x) => x.wholeSegment)) {
        set.delete(b);
        this.device.memFree(b.ptr);
        this.s.reservedBytes -= b.bytes;
      }
    }
  }

  stats(): AllocatorStats {
    return { ...this.s };
  }

  /** Bytes that allocations outside graph pools can still get: the driver's free memory and the shared cache's free blocks. */
  available(): number {
    let cached = 0;
    for (const set of Object.values(this.shared.sets)) for (const b of set.blocks) cached += b.bytes;
    return this.device.memInfo().free + cached;
  }

  /** Reset the peaks to the current values (e.g. after warm-up, to measure one step). */
  resetPeaks(): void {
    this.s.peakAllocatedBytes = this.s.allocatedBytes;
    this.s.peakReservedBytes = this.s.reservedBytes;
  }

  /** Cut `b` (out of every cache) down to `size`; the rest, when worth keeping, is a free block of the same owner. */
  private split(b: Block, size: number): void {
    const rest = b.bytes - size;
    if (b.kind === 'small' ? rest < ROUND : rest <= SMALL_MAX) return;
    const r = new Block(b.ptr + size, rest, b.kind);
    r.free = true;
    r.pool = b.pool;
    r.prev = b;
    r.next = b.next;
    if (b.next) b.next.prev = r;
    b.next = r;
    b.bytes = size;
    if (r.pool) r.pool.blocks.add(r);
    (r.pool?.cache ?? this.shared).of(r).add(r);
  }

  /** Put free `b` (in no cache) into its owner's cache, merged with free neighbours of the same owner. */
  private cacheFree(b: Block): void {
    const cache = b.pool?.cache ?? this.shared;
    const set = cache.of(b);
    const prev = b.prev;
    if (prev?.free && prev.pool === b.pool) {
      set.delete(prev);
      this.absorb(prev, b);
      b = prev;
    }
    const next = b.next;
    if (next?.free && next.pool === b.pool) {
      set.delete(next);
      this.absorb(b, next);
    }
    set.add(b);
  }

  /** `into` takes over its next neighbour `gone`. */
  private absorb(into: Block, gone: Block): void {
    into.bytes += gone.bytes;
    into.next = gone.next;
    if (gone.next) gone.next.prev = into;
    into.pool?.blocks.delete(gone);
  }

  private adopt(pool: GraphPool, b: Block): void {
    b.pool = pool;
    pool.blocks.add(b);
    this.s.graphPoolBytes += b.bytes;
  }

  /** A fresh segment for a request of `size` (see the header), or undefined when the driver has no room. */
  private newSegment(size: number): Block | undefined {
    const kind = kindOf(size);
    const own = roundUp(size, PAGE);
    const bytes = kind === 'small' ? SMALL_SEGMENT : kind === 'medium' ? MEDIUM_SEGMENT : own;
    let ptr = this.deviceAlloc(bytes);
    if (ptr === null && !this.capturing) {
      this.emptyCache();
      ptr = this.deviceAlloc(bytes);
    }
    if (ptr !== null) return new Block(ptr, bytes, kind);
    // near the end of memory, a medium segment that no longer fits may still fit as one of its own
    const p = own < bytes ? this.deviceAlloc(own) : null;
    return p === null ? undefined : new Block(p, own, kind);
  }

  private deviceAlloc(bytes: number): number | null {
    const p = this.device.memAlloc(bytes);
    if (p === null) return null;
    this.s.deviceAllocations++;
    this.s.reservedBytes += bytes;
    if (this.s.reservedBytes > this.s.peakReservedBytes) this.s.peakReservedBytes = this.s.reservedBytes;
    return p;
  }

  private outOfMemory(requested: number, what: string): CudaOutOfMemoryError {
    const { free, total } = this.device.memInfo();
    return new CudaOutOfMemoryError(
      `CUDA out of memory on ${this.deviceName}: allocating ${formatBytes(requested)} for ${what}; ` +
        `the GPU has ${formatBytes(free)} free of ${formatBytes(total)}, this process holds ${formatBytes(this.s.allocatedBytes)} in tensors ` +
        `(peak ${formatBytes(this.s.peakAllocatedBytes)}) and ${formatBytes(this.s.reservedBytes)} reserved` +
        (this.capturing ? ' (during CUDA graph capture, when the cache is not emptied: run the captured work once before capture)' : ''),
      {
        hint:
          'lower batch_size or max_length, turn on activation checkpointing, train with LoRA instead of full ' +
          'fine-tuning, or QLoRA (quantization: { load_in_4bit: true }); close other processes on the GPU (nvidia-smi)',
      },
    );
  }
}
