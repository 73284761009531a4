// crossEntropy(logits[N, V], labels int32[N], { ignoreIndex = -100 }) -> scalar: the mean over
// rows whose label is not ignoreIndex of -log softmax(logits)[label] (0 when every row is
// ignored). Log-sum-exp per row is saved; the gradient (softmax - onehot) / count is written
// straight into one [N, V] buffer.

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { tensor } from '../create.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkFloat, checkRank, empty } from './util.ts';

export interface CrossEntropyOptions {
  ignoreIndex?: number;
}

export function crossEntropy(logits: Tensor, labels: Int32Array | Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const dtype = checkFloat('crossEntropy', 'logits', logits);
  checkRank('crossEntropy', 'logits', logits, 2, '[N, V]');
  const [N, V] = logits.shape as [number, number];
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const host = labels instanceof Int32Array ? labels : labels.toInt32Array();
  if (host.length !== N) {
    throw new XtunerError(`crossEntropy: ${host.length} labels for logits ${fmt(logits.shape)} (need one per row)`);
  }
  let count = 0;
  for (let i = 0; i < N; i++) {
    const y = host[i]!;
    if (y === ignoreIndex) continue;
    if (y < 0 || y >= V) throw new XtunerError(`crossEntropy: label ${y} at row ${i} is outside [0, ${V}) and is not ignoreIndex ${ignoreIndex}`);
    count++;
  }
  const device = logits.device;
  const lab = tensor(host, [N], { device, dtype: 'int32' });
  const rowLoss = empty([N], 'float32', device);
  const lse = empty([N], 'float32', device);
  const be = logits.backend;
  be.crossEntropy(logits.storage, lab.storage, rowLoss.storage, lse.storage, N, V, ignoreIndex, dtype);
  // mean over the counted rows: a sum over N, then 1/count
  const out = empty([], 'float32', device);
  be.reduceSum(rowLoss.storage, out.storage, 1, N, 1, 'float32');
  be.scale(out.storage, out.storage, 1, count === 0 ? 0 : 1 / count, 'float32');
  rowLoss.dispose();
  recordOp('crossEntropy', out, [logits], [logits, lab, lse], ([sx, sl, slse], dy) => {
    const d = empty(logits.shape, dtype, device);
    const g = count === 0 ? 0 : dy.item() / count;
    be.crossEntropyBackward(sx!.storage, sl!.storage, slse!.storage, d.storage, N, V, ignoreIndex, g, dtype);
    return [d];
  });
  lab.dispose();
  lse.dispose();
  return out;
}
