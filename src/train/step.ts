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
// host queues one graph launch per iteration. Gradients keep their storage once the first
// backward made them (zeroed in place, not dropped), so the optimizer's tables and every graph find
// them where the first iteration put them; made as the backward reaches them, they cost the first
// iteration no more memory than an op-by-op step. All graphs of a run share one memory pool (their
// outputs are read before the next launch). Unpacked data
// padded per batch has many shapes: past MAX_GRAPHS kinds, new kinds run op by op.
// A capture that runs out of GPU memory (gradients kept whole through the step cost more at the
// peak than gradients made as the backward reaches them; a capture cannot hand the cache back to
// the driver) is not the end of the run: the graphs go, and this iteration and every later one
// run op by op, which is what fits. Nothing a capture queues has run, so the iteration's host
// state (the dropout stream) is put back and the cached cast copies are dropped before it reruns.
// A new kind's first iteration runs op by op while the graphs' pool holds its memory: when less is
// free beside the pool than the pool holds, the graphs go first (that iteration would need about as
// much), and out of memory there anyway drops them and reruns it, unless gradients were
// accumulating (its partial backward has added to them).

import { CudaOutOfMemoryError, cudaBackend, formatBytes, type CudaGraph, type CudaStorage, type GraphPool } from '../backends/cuda/index.ts';
import { XtunerError } from '../errors.ts';
import type { CausalLM, ForwardOptions, PreparedBatch } from '../models/causal-lm.ts';
import type { IdsInput } from '../models/inputs.ts';
import type { AdamW } from '../optim/adamw.ts';
import { clipCoefficient } from '../optim/clip.ts';
import { dropCastCopies, keep, readScalars, scale, tidy, type DropoutStream, type DropoutStreamState, type Tensor } from '../tensor/index.ts';

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
  /** Where a line for the user goes (the trainer's log); default stderr. */
  notice?: (line: string) => void;
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
  #graphs: boolean;
  /** Iterations run op by op, captured into a graph (and launched), and replayed (for reports and tests). */
  readonly counts = { eager: 0, captured: 0, replayed: 0 };
  readonly #o: TrainStepOptions;
  readonly #params: Tensor[];
  readonly #warm = new Set<string>();
  readonly #captured = new Map<string, Captured>();
  #pool: GraphPool | undefined;
  /** Gradients are zeroed in place, not dropped (graphs are captured over them). */
  #keepGrads: boolean;
  /** No backward since the last optimizer step: the gradients hold nothing. */
  #gradsZero = true;

  constructor(opts: TrainStepOptions) {
    this.#o = opts;
    this.#params = opts.optimizer.params.map(([, p]) => p);
    this.#graphs = opts.graphs ?? (opts.model.device === 'cuda' && process.env['XTUNER_CUDA_GRAPHS'] !== '0');
    if (this.#graphs && opts.model.device !== 'cuda') throw new XtunerError(`CUDA graphs need a model on cuda, this one is on ${opts.model.device}`);
    this.#keepGrads = this.#graphs;
  }

  /** Whether iterations go through CUDA graphs (false after a capture ran out of memory). */
  get graphs(): boolean {
    return this.#graphs;
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
    if (!g && (!this.#warm.has(key) || this.#captured.size >= MAX_GRAPHS)) {
      this.#warm.add(key);
      // an op-by-op iteration needs about what the captured one holds in the pool: without that
      // much beside it, it would run out partway (and with gradients accumulating, that is final)
      const room = this.#captured.size > 0 ? this.#roomBesideGraphs() : null;
      if (room) this.#dropGraphs(`a new kind of iteration (${p.signature}) would not fit beside the graphs' memory (${room})`, undefined);
      return this.#warmUp(p, kind);
    }
    // AdamW's host half, before the graph's device half
    if (kind.optimizerStep) this.#o.optimizer.beginStep();
    if (!g) {
      const state = this.#o.dropout?.getState();
      const captured = this.#capture(p, kind, key, addresses);
      if (captured instanceof CudaOutOfMemoryError) {
        this.#dropGraphs(`capturing the training step ran out of GPU memory (${captured.message})`, state);
        this.counts.eager++;
        return keepAll(this.#device(p, kind, false)); // its optimizer step is counted already
      }
      g = captured;
      this.#captured.set(key, g);
      this.counts.captured++;
    } else {
      this.counts.replayed++;
    }
    g.graph.launch();
    return g;
  }

  /** The graph of this iteration; out of memory is returned, not thrown (see the header). */
  #capture(p: PreparedBatch, kind: StepKind, key: string, addresses: string): Captured | CudaOutOfMemoryError {
    let outs: Outputs | null = null;
    let graph: CudaGraph;
    try {
      graph = cudaBackend().captureGraph(() => {
        outs = keepAll(this.#device(p, kind, false));
      }, this.#pool);
    } catch (e) {
      if (e instanceof CudaOutOfMemoryError) return e;
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
   * A kind's first iteration, op by op (the step counted after the backward: the first one makes
   * the gradients). Beside captured graphs it runs with their pool held: out of memory in its
   * forward or backward, with no gradients accumulated yet, drops the graphs and reruns it without
   * them. With an accumulation under way the partial backward cannot be undone: the error stands.
   */
  #warmUp(p: PreparedBatch, kind: StepKind): Outputs {
    this.counts.eager++;
    const recoverable = this.#captured.size > 0 && this.#gradsZero;
    const state = this.#o.dropout?.getState();
    let loss: Tensor;
    try {
      loss = this.#backward(p, kind);
    } catch (e) {
      if (!(recoverable && e instanceof CudaOutOfMemoryError)) throw e;
      this.#dropGraphs(`a new kind of iteration (${p.signature}) ran out of GPU memory beside the graphs (${e.message})`, state);
      return keepAll(this.#device(p, kind, true));
    }
    return keepAll({ loss, norm: this.#optimizerHalf(kind, true) });
  }

  /** Why an op-by-op iteration would not fit beside the graphs' pool (less free than the pool holds), or null when it would. */
  #roomBesideGraphs(): string | null {
    const be = cudaBackend();
    const pooled = be.memoryStats().graphPoolBytes;
    const free = be.availableBytes();
    return free >= pooled ? null : `${formatBytes(free)} free, the graphs' pool holds ${formatBytes(pooled)}`;
  }

  /**
   * After out of memory with graphs: no graphs from now on (their pool goes back), and the
   * iteration's host state put back for its rerun op by op: the dropout stream, the cast copies.
   */
  #dropGraphs(what: string, dropoutState: DropoutStreamState | undefined): void {
    this.dispose();
    this.#graphs = false;
    this.#keepGrads = false;
    // zero gradients (or a failed backward's partial ones: none were accumulated before it) go too:
    // made again as the backward reaches them, they do not all take memory at its start
    if (this.#gradsZero) this.#o.optimizer.zeroGrad(true);
    if (dropoutState) this.#o.dropout!.setState(dropoutState);
    for (const q of this.#params) dropCastCopies(q);
    (this.#o.notice ?? ((l: string) => console.error(l)))(
      `CUDA graphs: ${what}; training goes on op by op, which needs less (XTUNER_CUDA_GRAPHS=0 skips the attempt)`,
    );
  }

  /** The device half: forward and backward, then the optimizer's half when it steps. */
  #device(p: PreparedBatch, kind: StepKind, countStep: boolean): Outputs {
    const loss = this.#backward(p, kind);
    return { loss, norm: this.#optimizerHalf(kind, countStep) };
  }

  /** Forward, loss / factor, backward; returns the loss. */
  #backward(p: PreparedBatch, kind: StepKind): Tensor {
    return tidy(() => {
      const out = this.#o.model.forwardPrepared(p);
      scale(out.loss!, 1 / kind.lossFactor).backward();
      this.#gradsZero = false;
      return out.loss!;
    });
  }

  /**
   * When the optimizer steps: the clip coefficient, AdamW (counting its step first when
   * `countStep`: the eager path) and the gradients zeroed (dropped, or in place for graphs); returns
   * the grad norm.
   */
  #optimizerHalf(kind: StepKind, countStep: boolean): Tensor | null {
    if (!kind.optimizerStep) return null;
    const { optimizer, maxNorm } = this.#o;
    // clipping as a multiplier that AdamW reads on the device: no pass over the gradients, no wait
    const clip = clipCoefficient(this.#params, maxNorm);
    if (countStep) optimizer.beginStep();
    optimizer.queueStep(clip.coef);
    optimizer.zeroGrad(!this.#keepGrads);
    this.#gradsZero = true;
    clip.coef.dispose();
    return clip.norm;
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
  const ts = [p.dev.ids, p.dev.targets, p.dev.cuSeqlens, p.dev.lossScale, p.rope.cos, p.rope.sin, p.embeds, ...params.map((q) => q.grad)];
  return ts.map((t) => (t ? (t.storage as CudaStorage).ptr : '-')).join(' ');
}
