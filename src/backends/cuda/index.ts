// The CUDA backend: the kernel contract on one NVIDIA GPU (driver API through koffi, a caching
// allocator, cuBLAS for GEMMs, the kernels of native/cuda/). Created on first use; a machine
// without a usable driver, GPU, cuBLAS or built kernels gets an XtunerError saying which.
// Device selection: XTUNER_CUDA_DEVICE (an ordinal, default 0), after CUDA_VISIBLE_DEVICES.

import type { Backend } from '../backend.ts';
import { XtunerError } from '../../errors.ts';
import type { AllocatorStats, GraphPool } from './allocator.ts';
import { attention, attentionBackward } from './attention.ts';
import { newCounters, type DeviceInfo, type DriverCounters } from './driver.ts';
import { elementwiseKernels } from './elementwise.ts';
import { gemm } from './gemm.ts';
import { captureGraph, type CudaGraph } from './graph.ts';
import { layerKernels } from './layers.ts';
import { optimKernels } from './optim.ts';
import { quantKernels } from './quant.ts';
import { samplingKernels } from './sampling.ts';
import { dtypeBytes } from '../../tensor/dtype.ts';
import { CudaRuntime, CudaStorage } from './runtime.ts';

export { CudaStorage } from './runtime.ts';
export type { AllocatorStats, GraphPool } from './allocator.ts';
export { CudaOutOfMemoryError, formatBytes } from './allocator.ts';
export type { DeviceInfo, DriverCounters } from './driver.ts';
export type { CudaGraph } from './graph.ts';

export interface CudaBackend extends Backend<CudaStorage> {
  readonly info: DeviceInfo;
  /** The caching allocator's counters (peak memory of a run, driver allocations). */
  memoryStats(): AllocatorStats;
  /** Start the allocator's peaks (allocated, reserved) afresh from what is held now. */
  resetPeaks(): void;
  /** Bytes new allocations outside graph pools can still get (free on the device, free in the cache). */
  availableBytes(): number;
  /** Give cached, unused device memory back to the driver. */
  emptyCache(): void;
  /**
   * Take device memory from the driver outside the allocator until only `freeBytes` stay free (as
   * on a smaller card: the benchmark's --free-gib); returns how much was taken. Held for the process.
   */
  leaveFree(freeBytes: number): number;
  /** Wait for all queued work. */
  synchronize(): void;
  /** Host-device traffic since the last call (launches, copies, waits; see DriverCounters), and a fresh count. */
  takeCounters(): DriverCounters;
  /** Milliseconds of device time of the work `fn` queues (events on the stream). */
  time(fn: () => void): number;
  /** Device time of each kernel and cuBLAS call `fn` queues, summed by name (events around each; not under capture). */
  profile(fn: () => void): { name: string; calls: number; ms: number }[];
  /**
   * The device work `fn` queues, captured into a CUDA graph that launch() replays (see graph.ts:
   * run `fn` once first; inputs are rewritten in place; no host copies or reads inside `fn`).
   * `pool`: another graph's memoryPool, to share its memory (read each graph's outputs before the
   * next launch of the pool).
   */
  captureGraph(fn: () => void, pool?: GraphPool): CudaGraph;
}

function createCudaBackend(rt: CudaRuntime): CudaBackend {
  return {
    device: 'cuda',
    info: rt.driver.device,
    memoryStats: () => rt.allocator.stats(),
    resetPeaks: () => rt.allocator.resetPeaks(),
    availableBytes: () => rt.allocator.available(),
    emptyCache: () => rt.allocator.emptyCache(),
    leaveFree(freeBytes) {
      const take = rt.driver.memInfo().free - freeBytes;
      if (take <= 0) return 0;
      if (rt.driver.memAlloc(take) === null) throw new XtunerError(`could not take ${take} bytes of device memory to leave ${freeBytes} free`);
      return take;
    },
    synchronize: () => rt.driver.synchronize(),
    time: (fn) => rt.driver.time(fn),
    profile: (fn) => rt.driver.profile(fn),
    captureGraph: (fn, pool) => captureGraph(rt, fn, pool),
    takeCounters() {
      const c = rt.driver.counters;
      rt.driver.counters = newCounters();
      return c;
    },
    ...elementwiseKernels(rt),
    ...layerKernels(rt),
    ...optimKernels(rt),
    ...quantKernels(rt),
    ...samplingKernels(rt),
    view: (s, dtype, offset, size) => new CudaStorage(s.ptr + offset * dtypeBytes(dtype), size * dtypeBytes(dtype), null),
    gemm: (g) => gemm(rt, g),
    attention: (a) => attention(rt, a),
    attentionBackward: (a) => attentionBackward(rt, a),
  };
}

let backend: CudaBackend | null = null;

/** The CUDA backend, created on the first call; throws an XtunerError when CUDA is unusable here. */
export function cudaBackend(): CudaBackend {
  if (!backend) {
    const ordinal = Number(process.env['XTUNER_CUDA_DEVICE'] ?? 0);
    backend = createCudaBackend(new CudaRuntime(Number.isInteger(ordinal) && ordinal >= 0 ? ordinal : 0));
  }
  return backend;
}

/** Whether the CUDA backend can start here, and why not (the first problem found), without throwing. */
export function cudaStatus(): { available: true; device: string } | { available: false; reason: string } {
  try {
    const b = cudaBackend();
    return { available: true, device: `${b.info.name} (sm_${b.info.computeCapability.join('')}, driver ${b.info.driverVersion})` };
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  }
}
