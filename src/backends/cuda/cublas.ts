// cuBLAS through koffi: one handle on the driver's stream, and strided-batched GEMM with float32
// accumulation (cublasGemmStridedBatchedEx, column-major, as cuBLAS sees it). The row-major
// contract and dtype combinations cuBLAS lacks are handled by the caller (gemm.ts).
// The handle works in a workspace the caller allocates once (cublasSetWorkspace, as PyTorch does):
// cuBLAS then allocates nothing of its own, inside a captured CUDA graph or out of it.

import type { FloatDType } from '../../tensor/dtype.ts';
import { XtunerError } from '../../errors.ts';
import type { CudaDriver } from './driver.ts';
import { loadCublasLibrary } from './libs.ts';

type CFn = (...args: unknown[]) => number;

const CUDA_TYPE: Record<FloatDType, number> = { float32: 0, float16: 2, bfloat16: 14 }; // cudaDataType
const CUBLAS_COMPUTE_32F = 68;
const CUBLAS_GEMM_DEFAULT = -1;
/** The handle's workspace: PyTorch's size for Hopper (CUBLAS_WORKSPACE_CONFIG :4096:8), enough for every card. */
export const CUBLAS_WORKSPACE_BYTES = 32 * 1024 * 1024;

const STATUS: Record<number, string> = {
  1: 'CUBLAS_STATUS_NOT_INITIALIZED',
  3: 'CUBLAS_STATUS_ALLOC_FAILED',
  7: 'CUBLAS_STATUS_INVALID_VALUE',
  8: 'CUBLAS_STATUS_ARCH_MISMATCH',
  11: 'CUBLAS_STATUS_MAPPING_ERROR',
  13: 'CUBLAS_STATUS_EXECUTION_FAILED',
  14: 'CUBLAS_STATUS_INTERNAL_ERROR',
  15: 'CUBLAS_STATUS_NOT_SUPPORTED',
  16: 'CUBLAS_STATUS_LICENSE_ERROR',
};

/** Column-major C = alpha op(A) op(B) + beta C, `batch` times at the strides; pointers at element 0. */
export interface ColumnMajorGemm {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  alpha: number;
  a: number;
  lda: number;
  strideA: number;
  b: number;
  ldb: number;
  strideB: number;
  beta: number;
  c: number;
  ldc: number;
  strideC: number;
  batch: number;
  /** A and B share one dtype; C is that dtype or float32. */
  abDtype: FloatDType;
  cDtype: FloatDType;
}

export class Cublas {
  readonly libPath: string;
  private readonly handle: bigint;
  private readonly gemmFn: CFn;
  private readonly alpha = new Float32Array(1);
  private readonly beta = new Float32Array(1);

  /** `workspace`: CUBLAS_WORKSPACE_BYTES of device memory at this address, the handle's for good. */
  constructor(driver: CudaDriver, workspace: number) {
    const { lib, path } = loadCublasLibrary();
    this.libPath = path;
    const bind = (s: string): CFn => {
      try {
        return lib.func(s) as unknown as CFn;
      } catch (e) {
        throw new XtunerError(`cuBLAS at ${path} lacks a function: ${(e as Error).message}`, { hint: 'install cuBLAS 12 or 13' });
      }
    };
    const create = bind('int cublasCreate_v2(_Out_ void **handle)');
    const setStream = bind('int cublasSetStream_v2(void *handle, void *stream)');
    const setWorkspace = bind('int cublasSetWorkspace_v2(void *handle, uint64_t workspace, size_t bytes)');
    this.gemmFn = bind(
      'int cublasGemmStridedBatchedEx(void *handle, int transa, int transb, int m, int n, int k, const void *alpha, ' +
        'uint64_t A, int Atype, int lda, int64_t strideA, uint64_t B, int Btype, int ldb, int64_t strideB, const void *beta, ' +
        'uint64_t C, int Ctype, int ldc, int64_t strideC, int batchCount, int computeType, int algo)',
    );
    const h: unknown[] = [null];
    Cublas.check('cublasCreate', create(h), `cuBLAS at ${path}`);
    this.handle = h[0] as bigint;
    Cublas.check('cublasSetStream', setStream(this.handle, driver.stream));
    Cublas.check('cublasSetWorkspace', setWorkspace(this.handle, workspace, CUBLAS_WORKSPACE_BYTES));
  }

  private static check(call: string, rc: number, context = ''): void {
    if (rc === 0) return;
    throw new Error(`${call} failed: ${STATUS[rc] ?? `cuBLAS status ${rc}`}${context ? ` (${context})` : ''}`);
  }

  gemm(g: ColumnMajorGemm): void {
    this.alpha[0] = g.alpha;
    this.beta[0] = g.beta;
    const t = CUDA_TYPE[g.abDtype];
    const rc = this.gemmFn(
      this.handle, g.transA ? 1 : 0, g.transB ? 1 : 0, g.m, g.n, g.k, this.alpha,
      g.a, t, g.lda, g.strideA, g.b, t, g.ldb, g.strideB, this.beta,
      g.c, CUDA_TYPE[g.cDtype], g.ldc, g.strideC, g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT,
    );
    Cublas.check('cublasGemmStridedBatchedEx', rc, `m=${g.m} n=${g.n} k=${g.k} batch=${g.batch} ${g.abDtype}->${g.cDtype}`);
  }
}
