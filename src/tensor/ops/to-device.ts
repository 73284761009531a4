// toDevice(x, device): the same values on another device (x itself when already there); the
// gradient travels back. The copy goes through the host.

import type { Device } from '../../backends/index.ts';
import { recordOp } from '../autograd.ts';
import type { Tensor } from '../tensor.ts';
import { empty } from './util.ts';

export function toDevice(x: Tensor, device: Device): Tensor {
  if (x.device === device) return x;
  const out = empty(x.shape, x.dtype, device);
  if (x.device === 'cpu') out.assign(x); // from the host's memory as it is
  else out.backend.write(out.storage, x.dtype, 0, x.toHostArray());
  return recordOp('toDevice', out, [x], [], (_s, dy) => [toDevice(dy, x.device)]);
}
