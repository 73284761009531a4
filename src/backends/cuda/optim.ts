// CUDA launchers of the optimizer kernels (native/cuda/optim.cu): the AdamW step, with the bias
// corrections computed here in double precision, and sums of squares for the global grad norm.

import type { Backend } from '../backend.ts';
import { dtypeCode, sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

export function optimKernels(rt: CudaRuntime): Pick<Backend<CudaStorage>, 'adamwUpdate' | 'sumOfSquares'> {
  return {
    adamwUpdate(param, grad, expAvg, expAvgSq, size, dtypes, h) {
      if (size === 0) return;
      const decay = 1 - h.lr * h.weightDecay;
      const stepSize = h.lr / (1 - h.beta1 ** h.step);
      const bc2Sqrt = Math.sqrt(1 - h.beta2 ** h.step);
      rt.launch('optim', 'adamw', [rt.blocksFor(size)], [256], 0, 'pipipipilffffff', [
        param.ptr, dtypeCode(dtypes.param), grad.ptr, dtypeCode(dtypes.grad), expAvg.ptr, dtypeCode(dtypes.expAvg),
        expAvgSq.ptr, dtypeCode(dtypes.expAvgSq), size, h.beta1, h.beta2, h.eps, decay, stepSize, bc2Sqrt,
      ]);
    },
    sumOfSquares(x, size, dtype, out, outIndex) {
      const slot = out.ptr + 4 * outIndex;
      rt.driver.memset(slot, 4, 0, 1);
      if (size === 0) return;
      const blocks = Math.min(rt.blocksFor(size), rt.driver.device.multiprocessors * 4);
      rt.launch('optim', `sum_squares_${sfx(dtype)}`, [blocks], [256], 0, 'plp', [x.ptr, size, slot]);
    },
  };
}
