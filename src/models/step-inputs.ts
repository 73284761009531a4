// The int32 inputs of a forward on its device, written by one upload into one buffer before any
// kernel runs: ids [B, T], the shifted targets [B*T] (when there are labels) and cuSeqlens padded to
// its capacity (padCuSeqlens), each a view of the buffer. The buffer persists across forwards of the
// same sizes (packed rows of max_length: every training step), so every kernel reads its inputs
// from the same addresses each step, as a replayed CUDA graph needs, and nothing inside the step
// uploads. It is written again only when nothing still holds it (a pending backward keeps the
// views it saved, and so the buffer); otherwise the forward gets a fresh one.
// Not here: the rope tables (float, in the model's dtype; src/models/rope.ts caches them on the host).

import type { Device } from '../tensor/index.ts';
import { Tensor } from '../tensor/tensor.ts';

/** Views of one forward's inputs (they keep the buffer alive, and from being written again, until disposed). */
export interface DeviceInputs {
  ids: Tensor; // int32 [B, T]
  targets: Tensor | null; // int32 [B*T], -100 where there is no target
  cuSeqlens: Tensor | null; // int32 [capacity]
}

export class StepInputBuffer {
  #buf: Tensor | null = null;

  /** One upload of ids [b, t], targets and cuSeqlens (both optional) to `device`. */
  upload(device: Device, ids: Int32Array, b: number, t: number, targets: Int32Array | null, cuSeqlens: Int32Array | null): DeviceInputs {
    const n = b * t;
    const size = n + (targets ? n : 0) + (cuSeqlens?.length ?? 0);
    const packed = new Int32Array(size); // [ids | targets | cuSeqlens]
    packed.set(ids);
    if (targets) packed.set(targets, n);
    if (cuSeqlens) packed.set(cuSeqlens, size - cuSeqlens.length);
    const buf = this.#take(device, size);
    buf.assign(packed);
    return {
      ids: buf._view(0, [b, t]),
      targets: targets ? buf._view(n, [n]) : null,
      cuSeqlens: cuSeqlens ? buf._view(size - cuSeqlens.length, [cuSeqlens.length]) : null,
    };
  }

  /** The persistent buffer when it fits and nothing else holds it, else a new one (which persists). */
  #take(device: Device, size: number): Tensor {
    const cur = this.#buf;
    if (cur && cur.device === device && cur.size === size && cur._ref!.refs === 1) return cur;
    cur?.dispose(); // one still held lives on until its last view goes
    this.#buf = Tensor._allocUninit([size], 'int32', device, false);
    return this.#buf;
  }
}
