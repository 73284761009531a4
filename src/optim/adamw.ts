// AdamW with PyTorch's semantics (torch.optim.AdamW, amsgrad off): per parameter with a gradient,
// step += 1; p -= lr * weight_decay * p (decoupled decay, before the Adam update);
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^step) * m / (sqrt(v / (1 - b2^step)) + eps)   (eps outside the sqrt).
// The arithmetic is the backend's multi-tensor kernel (one call for every parameter of a step: one
// launch on CUDA, from a table of the tensors); clipping rides along as a gradient multiplier that
// stays on the device (clip.ts clipCoefficient). Moments are float32 whatever the parameter dtype.
// The state (moments and step counts) is exported by parameter name for checkpoints and loaded
// back for an exact resume.
// Not here: the learning-rate schedule (schedule.ts) and clipping (clip.ts).

import { XtunerError } from '../errors.ts';
import { ADAMW_STATE_WORDS } from '../backends/backend.ts';
import { fillInPlace, keep, queueAdamwStep, writeAdamwState, zeros, type AdamWEntry, type Tensor } from '../tensor/index.ts';

export interface AdamWOptions {
  lr: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
}

interface ParamState {
  step: number;
  expAvg: Tensor; // float32, the parameter's shape
  expAvgSq: Tensor;
}

/** Scalars of the optimizer state (JSON); the moments travel as tensors (see tensorState). */
export interface AdamWScalars {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** Steps taken per parameter name (parameters never stepped are absent). */
  steps: Record<string, number>;
}

export class AdamW {
  /** Current learning rate; the schedule sets it before each step. */
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly params: ReadonlyArray<readonly [string, Tensor]>;
  readonly #state = new Map<string, ParamState>();
  /** The step state the kernel reads (lr, betas, step): one buffer, rewritten each step in place. */
  #stepState: Tensor | null = null;

  /** `params`: [name, tensor] of the parameters to train (e.g. those with requiresGrad). */
  constructor(params: Iterable<readonly [string, Tensor]>, options: AdamWOptions) {
    const { lr, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01 } = options;
    const bad = (msg: string) => new XtunerError(`AdamW: ${msg}`);
    if (!(lr >= 0) || !Number.isFinite(lr)) throw bad(`lr must be a finite number >= 0, got ${lr}`);
    for (const [i, b] of betas.entries()) if (!(b >= 0 && b < 1)) throw bad(`betas[${i}] must be in [0, 1), got ${b}`);
    if (!(eps >= 0)) throw bad(`eps must be >= 0, got ${eps}`);
    if (!(weightDecay >= 0)) throw bad(`weight_decay must be >= 0, got ${weightDecay}`);
    this.lr = lr;
    [this.beta1, this.beta2] = betas;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.params = [...params];
    const names = new Set<string>();
    for (const [name, p] of this.params) {
      if (names.has(name)) throw bad(`parameter '${name}' is listed twice`);
      names.add(name);
      void p.floatDtype; // throws for integer tensors
    }
    if (this.params.length === 0) throw bad('no parameters to optimise');
  }

  /**
   * One update of every parameter that has a gradient, all in one backend call. `gradScale` (a
   * float32 single-element tensor on the parameters' device, e.g. clipCoefficient's coef) multiplies
   * every gradient on the device first; the gradients themselves are left as they are.
   */
  step(gradScale: Tensor | null = null): void {
    this.beginStep();
    this.queueStep(gradScale);
  }

  /**
   * The host half of step(): counts the step of every parameter with a gradient and writes the
   * step state the kernel reads (lr, betas, the step: one upload). Moments are made here, at a
   * parameter's first step.
   */
  beginStep(): void {
    for (const [name, p] of this.params) {
      if (!p.grad) continue;
      let s = this.#state.get(name);
      if (!s) {
        s = { step: 0, expAvg: keep(zeros(p.shape, { device: p.device })), expAvgSq: keep(zeros(p.shape, { device: p.device })) };
        this.#state.set(name, s);
      }
      s.step++;
    }
    const entries = this.#entries();
    if (entries.length === 0) return;
    this.#stepState ??= keep(zeros([ADAMW_STATE_WORDS], { dtype: 'int32', device: entries[0]!.param.device }));
    const hyper = { lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay };
    writeAdamwState(this.#stepState, hyper, entries);
  }

  /**
   * The device half of step(), after beginStep(): queues the update and copies nothing from the
   * host, so a captured CUDA graph can hold it (and replay it after each beginStep()).
   */
  queueStep(gradScale: Tensor | null = null): void {
    const entries = this.#entries();
    if (entries.length > 0) queueAdamwStep(entries, this.#stepState!, gradScale);
  }

  /** The parameters with a gradient, with their moments and step counts. */
  #entries(): AdamWEntry[] {
    const entries: AdamWEntry[] = [];
    for (const [name, p] of this.params) {
      const s = this.#state.get(name);
      if (p.grad && s) entries.push({ param: p, grad: p.grad, expAvg: s.expAvg, expAvgSq: s.expAvgSq, step: s.step });
    }
    return entries;
  }

  /**
   * Drops every gradient (PyTorch's zero_grad(set_to_none=True)), or with `setToNone` false sets
   * them to zero in place, so they keep their storage (a captured step's addresses).
   */
  zeroGrad(setToNone = true): void {
    for (const [, p] of this.params) {
      if (setToNone) p.grad = null;
      else if (p.grad) fillInPlace(p.grad, 0);
    }
  }

  scalars(): AdamWScalars {
    const steps: Record<string, number> = {};
    for (const [name, s] of this.#state) steps[name] = s.step;
    return { lr: this.lr, betas: [this.beta1, this.beta2], eps: this.eps, weightDecay: this.weightDecay, steps };
  }

  /** The moments by name: `exp_avg.<param>` and `exp_avg_sq.<param>` (PyTorch's state keys). */
  *tensorState(): IterableIterator<[string, Tensor]> {
    for (const [name, s] of this.#state) {
      yield [`exp_avg.${name}`, s.expAvg];
      yield [`exp_avg_sq.${name}`, s.expAvgSq];
    }
  }

  /** Restores what scalars() and tensorState() exported (values copied in; shapes checked). */
  loadState(scalars: AdamWScalars, tensors: ReadonlyMap<string, Float32Array>): void {
    const byName = new Map(this.params);
    const restored = new Map<string, ParamState>();
    for (const [name, step] of Object.entries(scalars.steps)) {
      const p = byName.get(name);
      if (!p) throw new XtunerError(`AdamW state: parameter '${name}' is not being optimised in this run`);
      if (!Number.isInteger(step) || step < 1) throw new XtunerError(`AdamW state: bad step ${step} for '${name}'`);
      const load = (key: string): Tensor => {
        const v = tensors.get(key);
        if (!v) throw new XtunerError(`AdamW state: missing '${key}'`);
        if (v.length !== p.size) throw new XtunerError(`AdamW state: '${key}' has ${v.length} values, the parameter has ${p.size}`);
        return keep(zeros(p.shape, { device: p.device })).assign(v);
      };
      restored.set(name, { step, expAvg: load(`exp_avg.${name}`), expAvgSq: load(`exp_avg_sq.${name}`) });
    }
    this.#disposeState();
    for (const [k, v] of restored) this.#state.set(k, v);
    this.lr = scalars.lr;
  }

  #disposeState(): void {
    for (const s of this.#state.values()) {
      s.expAvg.dispose();
      s.expAvgSq.dispose();
    }
    this.#state.clear();
  }

  /** Frees the moments and the step state. */
  dispose(): void {
    this.#disposeState();
    this.#stepState?.dispose();
    this.#stepState = null;
  }
}
