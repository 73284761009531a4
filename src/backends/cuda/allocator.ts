// The caching allocator for device memory. Sizes round up to classes; freed blocks go back to a
// free list per class and are handed out again without calling the driver, so a training step
// that repeats the same shapes allocates nothing from the driver after the first step.
//   small (<= 1 MiB): classes at quarter steps between powers of two (min 512 B), carved from
//                     2 MiB slabs; slabs are kept for the life of the process.
//   large (>  1 MiB): classes at 1/16 steps between powers of two, never finer than 2 MiB (the
//                     driver's own page size), one cuMemAlloc each, cached when freed.
// When the driver is out of memory the cached large blocks are returned to it and the allocation
// is tried once more before failing with an error that says what was asked, what is free, and what
// to change. All work runs on one stream, so a freed block is safe to reuse at once: later work
// on it queues behind the work that used it.
// CUDA graphs: while a graph is captured, allocations come from a pool private to it (as PyTorch's
// graph pools): its own free lists first, then blocks moved out of the shared cache, and only when
// both are empty a fresh cuMemAlloc (allowed: the capture is in relaxed mode; a warm-up run of the
// captured work before capture leaves the cache holding what the capture needs, so it allocates
// nothing from the driver). Every block freed during capture joins the pool, wherever it came
// from, since the graph's kernels may still touch it. After capture the pool's blocks stay
// reserved by the graph: a pool block freed later goes back to the pool, never to the shared
// cache, so each replay finds its buffers where capture left them and nothing else is put there.
// Disposing of the pool hands its free blocks to the shared cache and its live ones (the graph's
// outputs still held) to ordinary ownership. Out of memory during capture does not empty the
// cache (cuMemFree inside a capture may synchronise): the error says so.
// Several graphs may share one pool (as PyTorch's graph_pool_handle), so graphs that never run at
// once do not each reserve their own working memory: a later capture reuses the blocks the earlier
// graphs freed. The rule that makes it safe: a graph's outputs are read before any graph of the
// same pool is launched again (one graph's outputs may lie in another's scratch).
// Not here: pinned host memory, several streams.

import { XtunerError } from '../../errors.ts';

/** What the allocator needs from the device (the driver, or a fake in tests). */
export interface DeviceMemory {
  /** A fresh allocation, or null when out of memory. */
  memAlloc(bytes: number): number | null;
  memFree(ptr: number): void;
  memInfo(): { free: number; total: number };
}

export interface Block {
  readonly ptr: number;
  /** Class size: what the block occupies. */
  readonly bytes: number;
}

export interface AllocatorStats {
  /** Bytes in live blocks (class sizes) now, and the most there ever were. */
  allocatedBytes: number;
  peakAllocatedBytes: number;
  /** Bytes obtained from the driver now (live + cached + unused slab space), and the peak. */
  reservedBytes: number;
  peakReservedBytes: number;
  /** Allocations served, and how many of them needed the driver. */
  allocations: number;
  deviceAllocations: number;
  /** Bytes (class sizes) held by graph pools, live or free: reserved by their graphs until disposed. */
  graphPoolBytes: number;
}

/** The blocks of one CUDA graph (see the header). */
export class GraphPool {
  /** class size -> free block pointers, reused only by this pool's graph. */
  readonly free = new Map<number, number[]>();
  /** ptr -> class size of every block the pool holds, live or free. */
  readonly blocks = new Map<number, number>();
  /** Graphs holding the pool; it is handed back when the last one is disposed. */
  graphs = 0;
  disposed = false;
}

const KiB = 1024;
const MiB = 1024 * KiB;
export const SMALL_MAX = 1 * MiB;
const SLAB = 2 * MiB;
const MIN_BLOCK = 512;

/** The class an allocation of `bytes` (> 0) is served from. */
export function sizeClass(bytes: number): number {
  if (bytes <= MIN_BLOCK) return MIN_BLOCK;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  const step = bytes <= SMALL_MAX ? pow / 4 : Math.max(pow / 16, 2 * MiB);
  const c = Math.ceil(bytes / step) * step;
  return bytes <= SMALL_MAX ? Math.min(c, SMALL_MAX) : c;
}

export function formatBytes(n: number): string {
  if (n >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}

export class CachingAllocator {
  private readonly free = new Map<number, number[]>(); // class size -> cached block pointers
  private readonly live = new Map<number, number>(); // ptr -> class size
  private cachedLarge = 0;
  private readonly owner = new Map<number, GraphPool>(); // ptr -> the graph pool holding it
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
    const cls = sizeClass(bytes);
    const pool = this.capturing;
    let ptr = pool?.free.get(cls)?.pop();
    if (ptr === undefined) {
      ptr = this.free.get(cls)?.pop();
      if (ptr === undefined) {
        ptr = cls <= SMALL_MAX ? this.newSlabBlock(cls, bytes, what) : this.deviceAlloc(cls, bytes, what);
      } else if (cls > SMALL_MAX) {
        this.cachedLarge -= cls;
      }
      if (pool) this.adopt(pool, ptr, cls);
    }
    this.live.set(ptr, cls);
    this.s.allocations++;
    this.s.allocatedBytes += cls;
    if (this.s.allocatedBytes > this.s.peakAllocatedBytes) this.s.peakAllocatedBytes = this.s.allocatedBytes;
    return { ptr, bytes: cls };
  }

  release(block: Block): void {
    const cls = this.live.get(block.ptr);
    if (cls === undefined) throw new Error(`CUDA allocator: block ${block.ptr.toString(16)} freed twice or never allocated`);
    this.live.delete(block.ptr);
    this.s.allocatedBytes -= cls;
    const pool = this.owner.get(block.ptr) ?? this.capturing;
    if (pool) {
      if (!this.owner.has(block.ptr)) this.adopt(pool, block.ptr, cls);
      pushTo(pool.free, cls, block.ptr);
      return;
    }
    pushTo(this.free, cls, block.ptr);
    if (cls > SMALL_MAX) this.cachedLarge += cls;
  }

  /** Start serving allocations from `pool` (default: a fresh one) for the capture that begins; the graph holds the pool. */
  beginCapture(pool: GraphPool = new GraphPool()): GraphPool {
    if (this.capturing) throw new Error('CUDA allocator: a graph capture is already under way');
    if (pool.disposed) throw new Error('CUDA allocator: capturing into a disposed graph pool');
    pool.graphs++;
    this.capturing = pool;
    return pool;
  }

  /** Back to the shared cache for new allocations; the pool keeps its blocks (see the header). */
  endCapture(): void {
    this.capturing = null;
  }

  /**
   * A graph of `pool` is gone (or its capture failed). With the last one the pool's free blocks
   * join the shared cache and its live ones become ordinary blocks.
   */
  disposePool(pool: GraphPool): void {
    if (pool.disposed) return;
    if (this.capturing === pool) throw new Error('CUDA allocator: disposing of the pool of the graph being captured');
    if (--pool.graphs > 0) return;
    pool.disposed = true;
    for (const [ptr, cls] of pool.blocks) {
      this.owner.delete(ptr);
      this.s.graphPoolBytes -= cls;
    }
    for (const [cls, list] of pool.free) {
      for (const ptr of list) pushTo(this.free, cls, ptr);
      if (cls > SMALL_MAX) this.cachedLarge += cls * list.length;
    }
    pool.blocks.clear();
    pool.free.clear();
  }

  /** Return every cached large block to the driver (slabs stay; graph pools' blocks stay). */
  emptyCache(): void {
    for (const [cls, list] of this.free) {
      if (cls <= SMALL_MAX) continue;
      for (const p of list) {
        this.device.memFree(p);
        this.s.reservedBytes -= cls;
      }
      list.length = 0;
    }
    this.cachedLarge = 0;
  }

  stats(): AllocatorStats {
    return { ...this.s };
  }

  /** Reset the peaks to the current values (e.g. after warm-up, to measure one step). */
  resetPeaks(): void {
    this.s.peakAllocatedBytes = this.s.allocatedBytes;
    this.s.peakReservedBytes = this.s.reservedBytes;
  }

  private adopt(pool: GraphPool, ptr: number, cls: number): void {
    pool.blocks.set(ptr, cls);
    this.owner.set(ptr, pool);
    this.s.graphPoolBytes += cls;
  }

  private deviceAlloc(bytes: number, requested: number, what: () => string): number {
    let p = this.device.memAlloc(bytes);
    if (p === null && this.cachedLarge > 0 && !this.capturing) {
      this.emptyCache();
      p = this.device.memAlloc(bytes);
    }
    if (p === null) throw this.outOfMemory(requested, bytes, what());
    this.s.deviceAllocations++;
    this.s.reservedBytes += bytes;
    if (this.s.reservedBytes > this.s.peakReservedBytes) this.s.peakReservedBytes = this.s.reservedBytes;
    return p;
  }

  /**
   * Carve a new slab into blocks of `cls`; keep all but the first on the free list (the capturing
   * pool's during capture: the whole slab is then the graph's).
   */
  private newSlabBlock(cls: number, requested: number, what: () => string): number {
    const base = this.deviceAlloc(SLAB, requested, what);
    const pool = this.capturing;
    for (let off = SLAB - cls - (SLAB % cls); off > 0; off -= cls) {
      if (pool) this.adopt(pool, base + off, cls);
      pushTo(pool?.free ?? this.free, cls, base + off);
    }
    return base;
  }

  private outOfMemory(requested: number, cls: number, what: string): XtunerError {
    const { free, total } = this.device.memInfo();
    return new XtunerError(
      `CUDA out of memory on ${this.deviceName}: allocating ${formatBytes(requested)} (${formatBytes(cls)} block) for ${what}; ` +
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

function pushTo(free: Map<number, number[]>, cls: number, ptr: number): void {
  let list = free.get(cls);
  if (!list) free.set(cls, (list = []));
  list.push(ptr);
}
