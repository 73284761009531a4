// The backends by device. The CUDA backend starts on first use; where it cannot (no driver, no
// GPU, no cuBLAS, kernels not built) asking for it is an XtunerError saying which.

import type { Backend, Device } from './backend.ts';
import { cpuBackend } from './cpu/index.ts';
import { cudaBackend } from './cuda/index.ts';

export type { AdamWHyper, AdamWState, AdamWTensor, AttentionArgs, AttentionBackwardArgs, AttentionShape, Backend, BinaryOp, Device, FloatSpan, GemmArgs, Nf4WeightArgs, UnaryOp } from './backend.ts';
export { NF4_MATVEC_MAX_ROWS } from './backend.ts';
export { probeBackends, type BackendProbe, type LibraryProbe } from './probe.ts';

/** Storage as the tensor layer sees it: opaque, owned by one backend. */
export type Storage = object;

export function getBackend(device: Device): Backend<Storage> {
  switch (device) {
    case 'cpu':
      return cpuBackend as Backend<Storage>;
    case 'cuda':
      return cudaBackend() as unknown as Backend<Storage>;
    default:
      return device satisfies never;
  }
}
