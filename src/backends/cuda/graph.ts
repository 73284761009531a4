// CUDA graphs: the device work of a function captured once and replayed with one launch, so the
// host cost of its launches is paid once. The capture records the kernels, memsets and
// device-to-device copies the function queues; its allocations come from a pool private to the
// graph (allocator.ts), so a replay finds every buffer where the capture left it. Inputs are
// rewritten in place between launches (same storage, same address); outputs are the storages the
// function allocated and kept, read after launch() (a read waits for the replay).
// The function must queue device work only: a host copy, read or wait inside it is an XtunerError
// naming the operation (driver.ts), and the capture is abandoned. Run it once before capture, so
// lazily created state (kernel modules, cuBLAS, tables uploaded on first use) exists and the
// allocator's cache holds what the capture needs. Graphs that never run at once may share a pool
// (allocator.ts: read a graph's outputs before launching another of its pool).

import type { GraphPool } from './allocator.ts';
import type { CudaRuntime } from './runtime.ts';

export class CudaGraph {
  private disposed = false;

  constructor(
    private readonly rt: CudaRuntime,
    private readonly exec: bigint,
    private readonly pool: GraphPool,
    /** Releases of what the graph reads and others keep (runtime.ts holdForGraph). */
    private readonly holds: readonly (() => void)[],
  ) {}

  /** Queue one replay of the captured work on the stream. */
  launch(): void {
    if (this.disposed) throw new Error('CUDA graph launched after dispose()');
    this.rt.driver.launchGraph(this.exec);
  }

  /** The pool its allocations came from: pass it to captureGraph to share it. */
  get memoryPool(): GraphPool {
    return this.pool;
  }

  /** Free the executable graph and hand its pool back to the allocator (queued replays finish first: one stream). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt.driver.destroyGraphExec(this.exec);
    this.rt.allocator.disposePool(this.pool);
    for (const release of this.holds) release();
  }
}

/** Capture the device work `fn` queues into a graph (nothing runs until launch()), its allocations in `pool` (default: a pool of its own). */
export function captureGraph(rt: CudaRuntime, fn: () => void, pool?: GraphPool): CudaGraph {
  pool = rt.allocator.beginCapture(pool);
  rt.beginGraphHolds();
  const fail = (e: unknown): never => {
    rt.allocator.endCapture();
    rt.allocator.disposePool(pool);
    for (const release of rt.endGraphHolds()) release();
    throw e;
  };
  let graph = 0n;
  try {
    rt.driver.beginCapture();
    try {
      fn();
    } catch (e) {
      // end the abandoned capture; the driver may report it invalidated, which `e` already explains
      try {
        rt.driver.destroyGraph(rt.driver.endCapture());
      } catch {
        // invalidated: no graph to destroy
      }
      throw e;
    }
    graph = rt.driver.endCapture();
  } catch (e) {
    fail(e);
  }
  rt.allocator.endCapture();
  const holds = rt.endGraphHolds();
  try {
    return new CudaGraph(rt, rt.driver.instantiateGraph(graph), pool, holds);
  } catch (e) {
    rt.allocator.disposePool(pool);
    for (const release of holds) release();
    throw e;
  } finally {
    rt.driver.destroyGraph(graph);
  }
}
