// CUDA launchers of choosing a token on the device (native/cuda/sampling.cu).

import type { Backend } from '../backend.ts';
import { sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

const THREADS = 1024; // SAMPLE_THREADS in sampling.cu: one block selects

type Kernels = Pick<Backend<CudaStorage>, 'sampleArgmax' | 'topKCandidates'>;

export function samplingKernels(rt: CudaRuntime): Kernels {
  return {
    sampleArgmax(x, n, dtype, out) {
      rt.launch('sampling', `sample_argmax_${sfx(dtype)}`, [1], [THREADS], 0, 'plp', [x.ptr, n, out.ptr]);
    },
    topKCandidates(x, n, k, temperature, dtype, out, cap) {
      const s = sfx(dtype);
      const kth = rt.allocRaw(4, () => 'the k-th largest logit');
      rt.launch('sampling', `topk_kth_${s}`, [1], [THREADS], 0, 'plip', [x.ptr, n, k, kth.ptr]);
      rt.driver.memset(out.ptr, 4, 0, 1);
      // t as its 64 bits: the kernel divides in double, as JavaScript does
      const tBits = new BigInt64Array(Float64Array.of(temperature).buffer)[0]!;
      rt.launch('sampling', `topk_gather_${s}`, [rt.blocksFor(n)], [256], 0, 'plplip', [x.ptr, n, kth.ptr, tBits, cap, out.ptr]);
      rt.free(kth);
    },
  };
}
