// crossEntropy(logits[N, V], labels int32[N], { ignoreIndex = -100, reduction = 'mean' }) ->
// scalar: the mean (or sum) over rows whose label is not ignoreIndex of -log softmax(logits)[label]
// (0 when every row is ignored). When a gradient will be needed, the forward pass writes it too,
// (softmax - onehot) / count (sum: not divided) into one [N, V] buffer (the only full-vocabulary tensor the op adds, and the one the
// backward returns, multiplied in place by the upstream gradient read on the device), so the
// logits themselves need not be kept and each logit costs one exp.

import { XtunerError } from '../../errors.ts';
import { isRecording, recordOp } from '../autograd.ts';
import { tensor } from '../create.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { scaleInPlace } from '../inplace.ts';
import { checkFloat, checkRank, empty } from './util.ts';

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  /**
   * With host labels: the same labels already on the logits' device (int32 [N]), e.g. uploaded with
   * a step's other inputs, used instead of an upload (the host copy is what is checked and counted).
   */
  labelsOnDevice?: Tensor;
  /**
   * 'mean' (PyTorch's default) or 'sum'. A sum takes nothing from the labels' values but the rows
   * it skips, so its launches are the same whatever the labels (a loss over chunks scales the sum
   * by a device scalar instead: CausalLM's chunked loss).
   */
  reduction?: 'mean' | 'sum';
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
  const dev = opts.labelsOnDevice;
  if (dev && (dev.dtype !== 'int32' || dev.device !== device || fmt(dev.shape) !== fmt([N]))) {
    throw new XtunerError(`crossEntropy: labelsOnDevice must be int32 [${N}] on ${device}, got ${dev.dtype} ${fmt(dev.shape)} on ${dev.device}`);
  }
  const lab = dev ?? tensor(host, [N], { device, dtype: 'int32' });
  const rowLoss = empty([N], 'float32', device);
  const grad = isRecording([logits]) ? empty(logits.shape, dtype, device) : null;
  const be = logits.backend;
  const mean = (opts.reduction ?? 'mean') === 'mean';
  const inv = !mean ? 1 : count === 0 ? 0 : 1 / count;
  be.crossEntropy(logits.storage, lab.storage, rowLoss.storage, grad?.storage ?? null, N, V, ignoreIndex, inv, dtype);
  if (!dev) lab.dispose();
  // a sum over N (ignored rows hold 0); the mean then scales it by 1/count
  const out = empty([], 'float32', device);
  be.reduceSum(rowLoss.storage, out.storage, 1, N, 1, 'float32');
  if (mean) be.scale(out.storage, out.storage, 1, inv, 'float32', null);
  rowLoss.dispose();
  if (!grad) return out;
  // dy stays on the device: the scale kernel reads it there (no read-back, no wait in the backward).
  // In place: the saved gradient buffer is this node's alone and its backward runs once.
  recordOp('crossEntropy', out, [logits], [grad], ([g], dy) => [scaleInPlace(g!, dy)]);
  grad.dispose();
  return out;
}
