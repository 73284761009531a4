// The inputs of a forward on its device, each kind written by one upload into one buffer before any
// kernel runs: the int32 inputs (ids [B, T], the shifted targets [B*T] when there are labels, and
// cuSeqlens padded to its capacity: StepInputBuffer), the loss's 1 / supervised targets (float32
// [1], read by the loss's scale kernel, so no launch takes it as a constant) and the rope tables (cos | sin in the model's
// dtype: a PersistentBuffer of CausalLM), each a view of its buffer. A buffer persists across
// forwards of the same sizes (packed rows of max_length: every training step), so every kernel reads
// its inputs from the same addresses each step, as a replayed CUDA graph needs, and nothing inside
// the step uploads. It is written again only when nothing still holds it (a pending backward keeps
// the views it saved, and so the buffer); otherwise the forward gets a fresh one.

import type { Device, DType, HostArray } from '../tensor/index.ts';
import { Tensor } from '../tensor/tensor.ts';

/** Views of one forward's inputs (they keep the buffer alive, and from being written again, until disposed). */
export interface DeviceInputs {
  ids: Tensor; // int32 [B, T]
  targets: Tensor | null; // int32 [B*T], -100 where there is no target
  cuSeqlens: Tensor | null; // int32 [capacity]
  lossScale: Tensor | null; // float32 [1]: 1 / supervised targets (0 when none), with targets
}

/** One device buffer of `dtype`, written whole by each `write`. */
export class PersistentBuffer {
  #buf: Tensor | null = null;

  constructor(readonly dtype: DType) {}

  /**
   * `data` (host values, or a host tensor of this dtype) in one upload: into the persistent buffer
   * when it fits and nothing else holds it, else into a new one (which persists).
   */
  write(device: Device, data: HostArray | Tensor): Tensor {
    const n = data instanceof Tensor ? data.size : data.length;
    const cur = this.#buf;
    if (!(cur && cur.device === device && cur.size === n && cur._ref!.refs === 1)) {
      cur?.dispose(); // one still held lives on until its last view goes
      this.#buf = Tensor._allocUninit([n], this.dtype, device, false);
    }
    return this.#buf!.assign(data);
  }

  /** Lets the buffer go (views still held keep it until they go). */
  dispose(): void {
    this.#buf?.dispose();
    this.#buf = null;
  }
}

export class StepInputBuffer {
  readonly #buf = new PersistentBuffer('int32');
  readonly #lossScale = new PersistentBuffer('float32');

  /** One upload of ids [b, t], targets and cuSeqlens (both optional) to `device`, and one of the loss scale with targets. */
  upload(device: Device, ids: Int32Array, b: number, t: number, targets: Int32Array | null, cuSeqlens: Int32Array | null): DeviceInputs {
    const n = b * t;
    const size = n + (targets ? n : 0) + (cuSeqlens?.length ?? 0);
    const packed = new Int32Array(size); // [ids | targets | cuSeqlens]
    packed.set(ids);
    if (targets) packed.set(targets, n);
    if (cuSeqlens) packed.set(cuSeqlens, size - cuSeqlens.length);
    const buf = this.#buf.write(device, packed);
    return {
      ids: buf._view(0, [b, t]),
      targets: targets ? buf._view(n, [n]) : null,
      cuSeqlens: cuSeqlens ? buf._view(size - cuSeqlens.length, [cuSeqlens.length]) : null,
      lossScale: targets ? this.#lossScale.write(device, Float32Array.of(inverseCount(targets)))._view(0, [1]) : null,
    };
  }
}

/** 1 / the targets that are not -100, 0 when there are none. */
function inverseCount(targets: Int32Array): number {
  let n = 0;
  for (const y of targets) if (y !== -100) n++;
  return n === 0 ? 0 : 1 / n;
}
