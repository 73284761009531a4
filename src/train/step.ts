// One training iteration of a causal LM, as `xtuner train` and the benchmark run it: the batch
// prepared on the host (checked, uploaded: CausalLM.prepare), then the device half queued (forward,
// loss / factor, backward; when the optimizer steps, the global grad norm, the clip coefficient
// and AdamW with the coefficient read on the device), then one read of the loss (and the norm).
//
// CUDA graphs (on CUDA unless XTUNER_CUDA_GRAPHS=0): the device half of an iteration queues the
// same launches for every batch of one kind (the batch's signature: shapes and cuSeqlens capacity;
// the loss factor; whether the optimizer steps), reading its per-batch values from buffers the host
// half rewrites in place (inputs, loss scale, rope tables, the dropout seed, AdamW's step state).
// So the first iteration of a kind runs eagerly (it makes what is made lazily: kernels, cuBLAS,
// moments, cast copies, device tables), the second is captured into a graph, and from then on the
// host queues one graph launch per iteration. Gradients keep their storage for the whole run
// (zeroed in place, not dropped), so every graph finds them where it captured them; all graphs of
// a run share one memory pool (their outputs are read before the next launch). Unpacked data
// padded per batch has many shapes: past MAX_GRAPHS kinds, new kinds run op by op.

import { cudaBackend, type CudaGraph, type CudaStorage, type GraphPool } from '../backends/cuda/index.ts';
import { XtunerError } from '../errors.ts';
import type { CausalLM, ForwardOptions, PreparedBatch } from '../models/causal-lm.ts';
import type { IdsInput } from '../models/inputs.ts';
import type { AdamW } from '../optim/adamw.ts';
import { clipCoefficient } from '../optim/clip.ts';
import { keep, readScalars, scale, tidy, zeros, type DropoutStream, type Tensor } from '../tensor/index.ts';

/** Most graphs one run keeps (each holds a few MB of host and driver state, and its capture costs a step). */
export const MAX_GRAPHS = 16;

export interface TrainStepOptions {
  model: CausalLM;
  optimizer: AdamW;
  /** Gradients are clipped to this global norm before each optimizer step. */
  maxNorm: number;
  /** LoRA's dropout stream: a fresh base seed per iteration. */
  dropout: DropoutStream | null;
  /** Capture and replay CUDA graphs; default: on CUDA, unless XTUNER_CUDA_GRAPHS=0. */
  graphs?: boolean;
}

export interface StepBatch extends ForwardOptions {
  inputIds: IdsInput;
  labels: IdsInput;
}

export interface StepKind {
  /** The loss is divided by it before backward (gradient accumulation). */
  lossFactor: number;
  /** Whether the optimizer steps after this iteration, and at which learning rate. */
  optimizerStep: boolean;
  lr: number;
}

export interface StepResult {
  loss: number;
  /** The global grad norm before clipping, when the optimizer stepped. */
  gradNorm?: number;
}

/** A captured device half and the outputs its replays write. */
interface Captured {
  graph: CudaGraph;
  loss: Tensor;
  norm: Tensor | null;
  /** Device addresses of the prepared inputs it reads and of the gradients it writes. */
  addresses: string;
}

/** Device half outputs: the loss, and the grad norm when the optimizer stepped; `graph` when a graph's replays write them. */
interface Outputs {
  loss: Tensor;
  norm: Tensor | null;
  graph?: CudaGraph;
}

export class TrainStep {
  readonly graphs: boolean;
  /** Iterations run op by op, captured into a graph (and launched), and replayed (for reports and tests). */
  readonly counts = { eager: 0, captured: 0, replayed: 0 };
  readonly #o: TrainStepOptions;
  readonly #params: Tensor[];
  readonly #warm = new Set<string>();
  readonly #captured = new Map<string, Captured>();
  #pool: GraphPool | undefined;

  constructor(opts: TrainStepOptions) {
    this.#o = opts;
    this.#params = opts.optimizer.params.map(([, p]) => p);
    this.graphs = opts.graphs ?? (opts.model.device === 'cuda' && process.env['XTUNER_CUDA_GRAPHS'] !== '0');
    if (this.graphs && opts.model.device !== 'cuda') throw new XtunerError(`CUDA graphs need a model on cuda, this one is on ${opts.model.device}`);
  }

  /** One iteration; returns after its one read-back. */
  run(batch: StepBatch, kind: StepKind): StepResult {
    const { model, optimizer, dropout } = this.#o;
    if (kind.optimizerStep) optimizer.lr = kind.lr;
    // each iteration's dropout masks from a fresh base seed (one small upload, before its launches)
    dropout?.nextStep();
    const out = tidy((): Outputs => {
      const p = model.prepare(batch.inputIds, { ...batch, logits: false });
      if (!this.graphs) {
        this.counts.eager++;
        return keepAll(this.#device(p, kind, true));
      }
      // gradients live for the whole run from here on, so their addresses are the graphs'
      for (const q of this.#params) q.grad ??= zeros(q.shape, { dtype: q.dtype, device: q.device });
      if (kind.optimizerStep) optimizer.beginStep();
      return this.#graphStep(p, kind);
    });
    const [loss, gradNorm] = readScalars(out.norm ? [out.loss, out.norm] : [out.loss]) as [number, number?];
    if (!out.graph) for (const t of [out.loss, out.norm]) t?.dispose(); // a graph's outputs are its own
    return gradNorm === undefined ? { loss } : { loss, gradNorm };
  }

  /** The iteration through a graph of its kind: run eagerly the first time, captured the second, replayed after. */
  #graphStep(p: PreparedBatch, kind: StepKind): Outputs {
    const key = `${p.signature} / ${kind.lossFactor} / ${kind.optimizerStep ? 'step' : 'accumulate'}`;
    const addresses = addressesOf(p, this.#params);
    let g = this.#captured.get(key);
    if (g && g.addresses !== addresses) {
      // an input moved (a buffer still held elsewhere): this graph would read the old place
      this.#release(g);
      this.#captured.delete(key);
      g = undefined;
    }
    if (!g) {
      if (!this.#warm.has(key) || this.#captured.size >= MAX_GRAPHS) {
        this.#warm.add(key);
        this.counts.eager++;
        return keepAll(this.#device(p, kind, false));
      }
      g = this.#capture(p, kind, key, addresses);
      this.#captured.set(key, g);
      this.counts.captured++;
    } else {
      this.counts.replayed++;
    }
    g.graph.launch();
    return g;
  }

  #capture(p: PreparedBatch, kind: StepKind, key: string, addresses: string): Captured {
    let outs: Outputs | null = null;
    let graph: CudaGraph;
    try {
      graph = cudaBackend().captureGraph(() => {
        outs = keepAll(this.#device(p, kind, false));
      }, this.#pool);
    } catch (e) {
      // the cause's own hint first (out of memory: what to change), then the way round graphs
      const cause = e instanceof XtunerError && e.hint ? `${e.hint}; ` : '';
      throw new XtunerError(`capturing the training step as a CUDA graph (${key}) failed: ${(e as Error).message}`, {
        hint: `${cause}XTUNER_CUDA_GRAPHS=0 trains without graphs (slower; please report a capture failure with the config)`,
        cause: e,
      });
    }
    this.#pool ??= graph.memoryPool;
    const o = outs as Outputs | null;
    return { graph, loss: o!.loss, norm: o!.norm, addresses };
  }

  /**
   * The device half: forward, loss / factor, backward, and when the optimizer steps the clip
   * coefficient, AdamW (counting its step first when `countStep`: the eager path) and the
   * gradients zeroed (dropped without graphs, zeroed in place with them).
   */
  #device(p: PreparedBatch, kind: StepKind, countStep: boolean): Outputs {
    const { model, optimizer, maxNorm } = this.#o;
    const loss = tidy(() => {
      const out = model.forwardPrepared(p);
      scale(out.loss!, 1 / kind.lossFactor).backward();
      return out.loss!;
    });
    if (!kind.optimizerStep) return { loss, norm: null };
    // clipping as a multiplier that AdamW reads on the device: no pass over the gradients, no wait
    const clip = clipCoefficient(this.#params, maxNorm);
    if (countStep) optimizer.beginStep();
    optimizer.queueStep(clip.coef);
    optimizer.zeroGrad(!this.graphs);
    clip.coef.dispose();
    return { loss, norm: clip.norm };
  }

  #release(g: Captured): void {
    g.loss.dispose();
    g.norm?.dispose();
    g.graph.dispose();
  }

  /** Frees the graphs and their outputs. */
  dispose(): void {
    for (const g of this.#captured.values()) this.#release(g);
    this.#captured.clear();
    this.#warm.clear();
    this.#pool = undefined;
  }
}

/** The outputs, kept out of the enclosing scope (the caller disposes them; a graph keeps its own). */
function keepAll(o: Outputs): Outputs {
  keep(o.loss);
  if (o.norm) keep(o.norm);
  return o;
}

/** Where the prepared inputs and the gradients lie on the device: a graph replays only over the addresses it captured. */
function addressesOf(p: PreparedBatch, params: readonly Tensor[]): string {
  const ts = [p.dev.ids, p.dev.targets, p.dev.cuSeqlens, p.dev.lossScale, p.rope.cos, p.rope.sin, ...params.map((q) => q.grad)];
  return ts.map((t) => (t ? (t.storage as CudaStorage).ptr : '-')).join(' ');
}
