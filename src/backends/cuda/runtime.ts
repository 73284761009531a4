// One CUDA device as the backend uses it: the driver (context, stream), the caching allocator,
// the kernel modules and cuBLAS (loaded on the first GEMM), plus the storage type and the small
// helpers every launcher shares (dtype names and codes, grid sizes, scratch buffers).

import { dtypeBytes, type DType, type FloatDType } from '../../tensor/dtype.ts';
import { CachingAllocator, type Block } from './allocator.ts';
import { CUBLAS_WORKSPACE_BYTES, Cublas } from './cublas.ts';
import { CudaDriver } from './driver.ts';
import { Kernels, type KernelArg, type KernelModule } from './kernels.ts';

/** A device allocation of the CUDA backend. `ptr` is 0 for empty storage. */
export class CudaStorage {
  freed = false;
  constructor(
    readonly ptr: number,
    /** Requested bytes. */
    readonly bytes: number,
    readonly block: Block | null,
  ) {}
}

/** Kernel name suffix of a float dtype (see native/cuda/common.cuh). */
export function sfx(dtype: FloatDType): 'f32' | 'bf16' | 'f16' {
  return dtype === 'float32' ? 'f32' : dtype === 'bfloat16' ? 'bf16' : 'f16';
}

/** Run-time dtype code of native/cuda/common.cuh (DtypeCode). */
export function dtypeCode(dtype: DType): number {
  switch (dtype) {
    case 'float32':
      return 0;
    case 'bfloat16':
      return 1;
    case 'float16':
      return 2;
    case 'int32':
      return 3;
    case 'int64':
      return 4;
    case 'uint8':
      return 5;
    default:
      return dtype satisfies never;
  }
}

/** Device address of element `offset` of `s`. */
export function at(s: CudaStorage, dtype: DType, offset = 0): number {
  if (s.freed) throw new Error('CUDA storage used after free');
  return s.ptr + offset * dtypeBytes(dtype);
}

export class CudaRuntime {
  readonly driver: CudaDriver;
  readonly allocator: CachingAllocator;
  readonly kernels: Kernels;
  private blas: Cublas | null = null;

  constructor(ordinal = 0) {
    this.driver = new CudaDriver(ordinal);
    this.allocator = new CachingAllocator(this.driver, `${this.driver.device.name} (cuda:${ordinal})`);
    this.kernels = new Kernels(this.driver);
  }

  get cublas(): Cublas {
    if (!this.blas) {
      // kept for the life of the process, as the handle
      const workspace = this.allocRaw(CUBLAS_WORKSPACE_BYTES, () => 'the cuBLAS workspace');
      this.blas = new Cublas(this.driver, workspace.ptr);
    }
    return this.blas;
  }

  /** Uninitialised storage of `bytes`; `what` names it in an out-of-memory error. */
  allocRaw(bytes: number, what: () => string): CudaStorage {
    if (bytes === 0) return new CudaStorage(0, 0, null);
    const block = this.allocator.alloc(bytes, what);
    return new CudaStorage(block.ptr, bytes, block);
  }

  /** While a graph is captured: what to release when it is disposed (see holdForGraph). */
  private holds: (() => void)[] | null = null;

  /**
   * During a capture, keeps something the captured work reads (a table uploaded before it) alive
   * for as long as the graph: `release` runs when the graph is disposed. Returns whether it holds
   * (false outside a capture: nothing to keep).
   */
  holdForGraph(release: () => void): boolean {
    this.holds?.push(release);
    return this.holds !== null;
  }

  /** Start collecting a capture's holds; endGraphHolds hands them to its graph. */
  beginGraphHolds(): void {
    this.holds = [];
  }

  endGraphHolds(): (() => void)[] {
    const h = this.holds ?? [];
    this.holds = null;
    return h;
  }

  free(s: CudaStorage): void {
    if (s.freed) throw new Error('CUDA storage freed twice');
    s.freed = true;
    if (s.block) this.allocator.release(s.block);
  }

  /** Float32 scratch of `n` elements, zeroed when asked. Free it after queueing its last use. */
  scratchF32(n: number, what: string, zero = false): CudaStorage {
    const s = this.allocRaw(4 * n, () => what);
    if (zero) this.driver.memset(s.ptr, 4, 0, n);
    return s;
  }

  /** Host int32 values copied into fresh device scratch. */
  uploadI32(values: Int32Array, what: string): CudaStorage {
    const s = this.allocRaw(values.byteLength, () => what);
    this.driver.copyToDevice(s.ptr, values, values.byteLength, `the upload of ${what}`);
    return s;
  }

  launch(
    module: KernelModule,
    name: string,
    grid: readonly [number, number?, number?],
    block: readonly [number, number?, number?],
    smem: number,
    sig: string,
    args: readonly KernelArg[],
  ): void {
    const k = this.kernels.get(module, name);
    if (!k.checked) this.kernels.verify(k, sig, args);
    if (smem > 48 * 1024) this.driver.allowDynamicShared(k.fn, smem, name);
    this.driver.launch(k.fn, name, grid, block, smem, sig, args);
  }

  /** Blocks for a grid-stride loop over n elements at `threads` per block. */
  blocksFor(n: number, threads = 256): number {
    return Math.max(1, Math.min(Math.ceil(n / threads), this.driver.device.multiprocessors * 32));
  }
}
