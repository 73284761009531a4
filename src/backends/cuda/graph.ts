// CUDA graphs: the device work of a function captured once and replayed with one launch, so the
// host cost of its launches is paid once. The capture records the kernels, memsets and
// device-to-device copies the function queues; its allocations come from a pool private to the
// graph (allocator.ts), so a replay finds every buffer where the capture left it. Inputs are
// rewritten in place between launches (same storage, same address); outputs are the storages the
// function allocated and kept, read after launch() (a read waits for the replay).
// The function must queue device work only: a host copy, read or wait inside it is an XtunerError
// naming the operation (driver.ts), and the capture is abandoned. Run it once before capture, so
// lazily created state (kernel modules, cuBLAS, tables uploaded on first use) exists and the
// allocator's cache holds what the capture needs.

import type { GraphPool } from './allocator.ts';
import type { CudaRuntime } from './runtime.ts';

export class CudaGraph {
  private disposed = false;

  constructor(
    private readonly rt: CudaRuntime,
    private readonly exec: bigint,
    private readonly pool: GraphPool,
  ) {}

  /** Queue one replay of the captured work on the stream. */
  launch(): void {
    if (this.disposed) throw new Error('CUDA graph launched after dispose()');
    this.rt.driver.launchGraph(this.exec);
  }

  /** Free the executable graph and hand its pool back to the allocator (queued replays finish first: one stream). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt.driver.destroyGraphExec(this.exec);
    this.rt.allocator.disposePool(this.pool);
  }
}

/** Capture the device work `fn` queues into a graph (nothing runs until launch()). */
export function captureGraph(rt: CudaRuntime, fn: () => void): CudaGraph {
  const pool = rt.allocator.beginCapture();
  let graph: bigint;
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
    rt.allocator.endCapture();
    rt.allocator.disposePool(pool);
    throw e;
  }
  rt.allocator.endCapture();
  try {
    return new CudaGraph(rt, rt.driver.instantiateGraph(graph), pool);
  } catch (e) {
    rt.allocator.disposePool(pool);
    throw e;
  } finally {
    rt.driver.destroyGraph(graph);
  }
}
