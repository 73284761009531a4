// The backends by device. Only the CPU backend exists in this build; asking for CUDA is a clear
// error naming what to do instead.

import { XtunerError } from '../errors.ts';
import type { Backend, Device } from './backend.ts';
import { cpuBackend } from './cpu/index.ts';

export type { AdamWHyper, AttentionArgs, AttentionBackwardArgs, AttentionShape, Backend, BinaryOp, Device, GemmArgs, UnaryOp } from './backend.ts';
export { probeBackends, type BackendProbe, type LibraryProbe } from './probe.ts';

/** Storage as the tensor layer sees it: opaque, owned by one backend. */
export type Storage = object;

export function getBackend(device: Device): Backend<Storage> {
  switch (device) {
    case 'cpu':
      return cpuBackend as Backend<Storage>;
    case 'cuda':
      throw new XtunerError('device "cuda" is not available: the CUDA backend is not part of this build yet', {
        hint: "use device: 'cpu' (run `xtuner env` to see what was found)",
      });
    default:
      return device satisfies never;
  }
}
