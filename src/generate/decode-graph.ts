// A decoded token's device work as one CUDA graph: a decoding step (one new token) queues the same
// launches at every position, since the KV cache reads its position and length on the device
// (./kv-cache.ts) and the step's inputs (the token id or its embedding, the rope rows) are written
// into buffers that keep their addresses. So the first step runs op by op (it makes what is made
// lazily: kernel modules, cast copies, uploaded tables), the second is captured and launched, and
// every later one is three small uploads, one launch and one read of the logits, where op by op it
// was a few hundred launches queued from JavaScript (several ms of host time per token, more than
// the device needs for a small model). One graph per KV cache (it captured the cache's buffers),
// freed with it. A capture that runs out of GPU memory leaves the rest of the generation op by op.

import { CudaOutOfMemoryError, cudaBackend, type CudaGraph, type CudaStorage } from '../backends/cuda/index.ts';
import { XtunerError } from '../errors.ts';
import { PersistentBuffer } from '../models/step-inputs.ts';
import { keep, type DType, type Tensor } from '../tensor/index.ts';

export class DecodeGraph {
  /** The token id, int32 [1]. */
  readonly ids = new PersistentBuffer('int32');
  /** The rope's cos | sin rows of the position. */
  readonly rope: PersistentBuffer;
  /** The token's embedding, when the table is in host memory. */
  readonly embeds: PersistentBuffer;
  /** Steps run op by op, captured (and launched), replayed (for tests and reports). */
  readonly counts = { eager: 0, captured: 0, replayed: 0 };
  #graph: CudaGraph | null = null;
  #logits: Tensor | null = null;
  #off = false;
  /** Where the inputs it captured lie on the device. */
  #addresses = '';

  constructor(dtype: DType) {
    this.rope = new PersistentBuffer(dtype);
    this.embeds = new PersistentBuffer(dtype);
  }

  /** False once a capture ran out of memory: the caller decodes op by op from then on. */
  get on(): boolean {
    return !this.#off;
  }

  /**
   * The step's logits: `run` (its device work, reading `inputs`, views of this object's buffers,
   * and the cache) op by op the first time, captured and launched the second, the graph launched
   * after (captured again if an input has moved). The logits are the graph's own (valid until its
   * next launch), or, op by op, the caller's (`own`: kept out of every scope, to dispose).
   */
  step(run: () => Tensor, inputs: readonly Tensor[]): { logits: Tensor; own: boolean } {
    if (this.counts.eager === 0) {
      this.counts.eager++;
      return { logits: keep(run()), own: true };
    }
    const addresses = inputs.map((t) => (t.storage as CudaStorage).ptr).join(' ');
    if (this.#graph && addresses !== this.#addresses) this.#release(); // an input moved (a buffer held elsewhere): capture again
    if (!this.#graph) {
      let logits: Tensor | null = null;
      try {
        this.#graph = cudaBackend().captureGraph(() => {
          logits = keep(run());
        });
      } catch (e) {
        if (!(e instanceof CudaOutOfMemoryError)) {
          throw new XtunerError(`capturing a decoding step as a CUDA graph failed: ${(e as Error).message}`, {
            hint: 'XTUNER_CUDA_GRAPHS=0 decodes without graphs (slower; please report a capture failure)',
            cause: e,
          });
        }
        // nothing the capture queued has run: this step goes op by op, and so do the rest
        this.#off = true;
        this.counts.eager++;
        return { logits: keep(run()), own: true };
      }
      this.#logits = logits;
      this.#addresses = addresses;
      this.counts.captured++;
    } else {
      this.counts.replayed++;
    }
    this.#graph.launch();
    return { logits: this.#logits!, own: false };
  }

  /** Frees the graph, its logits and its input buffers (with the KV cache it captured). */
  dispose(): void {
    for (const b of [this.ids, this.rope, this.embeds]) b.dispose();
    this.#release();
  }

  #release(): void {
    this.#logits?.dispose();
    this.#graph?.dispose();
    this.#logits = null;
    this.#graph = null;
  }
}
