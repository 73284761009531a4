// CUDA launchers of the fused row kernels: RMSNorm and LayerNorm (native/cuda/norm.cu), softmax,
// rope, embedding and cross-entropy. One block per row unless said otherwise.

import type { Backend } from '../backend.ts';
import { dtypeBytes } from '../../tensor/dtype.ts';
import { sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

/** Static shared memory every block may use without opting in. */
const SMEM_DEFAULT = 48 * 1024;

/** Threads for a block that walks one row of `cols`: a multiple of 32, at most 256 (1024 for long rows). */
function rowThreads(cols: number): number {
  if (cols >= 16384) return 1024;
  return Math.min(256, Math.max(32, Math.ceil(cols / 32) * 32));
}

type Kernels = Pick<
  Backend<CudaStorage>,
  | 'softmax' | 'softmaxBackward' | 'rmsNorm' | 'rmsNormBackward' | 'layerNorm' | 'layerNormBackward'
  | 'rope' | 'embedding' | 'embeddingBackward' | 'crossEntropy'
>;

export function layerKernels(rt: CudaRuntime): Kernels {
  const sms = rt.driver.device.multiprocessors;
  /** Blocks for a backward that loops over rows, each block summing its dw/db in shared memory. */
  const bwdBlocks = (rows: number): number => Math.max(1, Math.min(rows, sms * 4));
  return {
    softmax(x, out, rows, cols, dtype) {
      if (rows > 0) rt.launch('softmax', `softmax_fwd_${sfx(dtype)}`, [rows], [rowThreads(cols)], 0, 'ppi', [x.ptr, out.ptr, cols]);
    },
    softmaxBackward(y, dy, dx, rows, cols, dtype) {
      if (rows > 0) rt.launch('softmax', `softmax_bwd_${sfx(dtype)}`, [rows], [rowThreads(cols)], 0, 'pppi', [y.ptr, dy.ptr, dx.ptr, cols]);
    },
    rmsNorm(x, w, out, rstd, rows, cols, eps, dtype, wDtype) {
      if (rows === 0) return;
      rt.launch('norm', `rms_norm_fwd_${sfx(dtype)}_${sfx(wDtype)}`, [rows], [rowThreads(cols)], 0, 'ppppif', [x.ptr, w.ptr, out.ptr, rstd.ptr, cols, eps]);
    },
    rmsNormBackward(x, w, rstd, dy, dx, dw, rows, cols, dtype, wDtype, accumulate = false) {
      if (dw) rt.driver.memset(dw.ptr, 4, 0, cols); // the kernel adds its blocks' partial sums
      if (rows === 0) return;
      const smem = dw !== null && 4 * cols <= SMEM_DEFAULT ? 4 * cols : 0;
      rt.launch('norm', `rms_norm_bwd_${sfx(dtype)}_${sfx(wDtype)}`, [bwdBlocks(rows)], [rowThreads(cols)], smem, 'ppppppiiii', [
        x.ptr, w.ptr, rstd.ptr, dy.ptr, dx.ptr, dw?.ptr ?? 0, rows, cols, smem > 0 ? 1 : 0, accumulate ? 1 : 0,
      ]);
    },
    layerNorm(x, w, b, out, mean, rstd, rows, cols, eps, dtype, wDtype) {
      if (rows === 0) return;
      rt.launch('norm', `layer_norm_fwd_${sfx(dtype)}_${sfx(wDtype)}`, [rows], [rowThreads(cols)], 0, 'ppppppif', [
        x.ptr, w.ptr, b?.ptr ?? 0, out.ptr, mean.ptr, rstd.ptr, cols, eps,
      ]);
    },
    layerNormBackward(x, w, mean, rstd, dy, dx, dw, db, rows, cols, dtype, wDtype) {
      if (dw) rt.driver.memset(dw.ptr, 4, 0, cols); // the kernel adds its blocks' partial sums
      if (db) rt.driver.memset(db.ptr, 4, 0, cols);
      if (rows === 0) return;
      const smem = (dw !== null || db !== null) && 8 * cols <= SMEM_DEFAULT ? 8 * cols : 0;
      rt.launch('norm', `layer_norm_bwd_${sfx(dtype)}_${sfx(wDtype)}`, [bwdBlocks(rows)], [rowThreads(cols)], smem, 'ppppppppiii', [
        x.ptr, w.ptr, mean.ptr, rstd.ptr, dy.ptr, dx.ptr, dw?.ptr ?? 0, db?.ptr ?? 0, rows, cols, smem > 0 ? 1 : 0,
      ]);
    },
    rope(x, cos, sin, out, B, T, H, D, csBatchStride, inverse, dtype) {
      const n = B * T * H * (D >> 1);
      if (n === 0) return;
      rt.launch('rope', `rope_${sfx(dtype)}`, [rt.blocksFor(n)], [256], 0, 'ppppiiiili', [
        x.ptr, cos.ptr, sin.ptr, out.ptr, B, T, H, D, csBatchStride, inverse ? 1 : 0,
      ]);
    },
    embedding(w, ids, out, n, H, dtype) {
      if (n * H === 0) return;
      const name = dtypeBytes(dtype) === 2 ? 'embedding_b2' : 'embedding_b4';
      rt.launch('embedding', name, [rt.blocksFor(n * H)], [256], 0, 'pppli', [w.ptr, ids.ptr, out.ptr, n, H]);
    },
    embeddingBackward(dy, ids, dw, n, H, dtype) {
      rt.driver.memset(dw.ptr, 4, 0, dw.bytes / 4); // [V, H]: the kernel adds rows with atomics
      if (n * H === 0) return;
      rt.launch('embedding', `embedding_bwd_${sfx(dtype)}`, [rt.blocksFor(n * H)], [256], 0, 'pppli', [dy.ptr, ids.ptr, dw.ptr, n, H]);
    },
    crossEntropy(logits, labels, loss, dlogits, N, V, ignoreIndex, gradScale, dtype) {
      if (N === 0) return;
      rt.launch('cross-entropy', `cross_entropy_${sfx(dtype)}`, [N], [rowThreads(V)], 0, 'ppppiif', [
        logits.ptr, labels.ptr, loss.ptr, dlogits?.ptr ?? 0, V, ignoreIndex, gradScale,
      ]);
    },
  };
}
