// Learning-rate schedule of XTuner's configs: mmengine LinearLR warm-up (start_factor 1e-5) over
// the first `warmupIters` iterations, then CosineAnnealingLR down to eta_min until the end, both
// converted to iterations (`convert_to_iter_based=True`). An iteration is one train-loop
// iteration (one micro-batch): mmengine's ParamSchedulerHook steps after every train iteration,
// whatever `accumulative_counts` is. Closed forms of mmengine's chained updates; the state is one
// integer, serialisable for resume. Not here: other schedulers, per-group learning rates.

import { XtunerError } from '../errors.ts';

export interface WarmupCosineOptions {
  /** Base learning rate (the optimizer's lr). */
  lr: number;
  /** Iterations of the whole run (where the cosine ends). */
  totalIters: number;
  /** Iterations of linear warm-up; 0 for none. */
  warmupIters: number;
  /** LinearLR start_factor; XTuner uses 1e-5. */
  startFactor?: number;
  /** CosineAnnealingLR eta_min; XTuner uses 0. */
  etaMin?: number;
}

export interface WarmupCosineState {
  iter: number;
  lr: number;
  totalIters: number;
  warmupIters: number;
  startFactor: number;
  etaMin: number;
}

/**
 * Iteration counts as XTuner's config gets them: LinearLR `end = warmup_ratio * max_epochs` and
 * CosineAnnealingLR `end = max_epochs`, each times the epoch length and truncated to an integer
 * (mmengine `build_iter_from_epoch`).
 */
export function xtunerScheduleIters(warmupRatio: number, maxEpochs: number, itersPerEpoch: number): {
  warmupIters: number;
  totalIters: number;
} {
  return {
    warmupIters: Math.trunc(warmupRatio * maxEpochs * itersPerEpoch),
    totalIters: Math.trunc(maxEpochs * itersPerEpoch),
  };
}

export class WarmupCosineSchedule {
  readonly baseLr: number;
  readonly totalIters: number;
  readonly warmupIters: number;
  readonly startFactor: number;
  readonly etaMin: number;
  /** The next iteration to run; `lr` is its learning rate. */
  iter = 0;

  constructor(options: WarmupCosineOptions) {
    const { lr, totalIters, warmupIters, startFactor = 1e-5, etaMin = 0 } = options;
    const bad = (what: string) => new XtunerError(`learning-rate schedule: ${what}`);
    if (!(lr >= 0) || !Number.isFinite(lr)) throw bad(`lr must be a finite number >= 0, got ${lr}`);
    if (!Number.isInteger(totalIters) || totalIters < 1) throw bad(`totalIters must be an integer >= 1, got ${totalIters}`);
    if (!Number.isInteger(warmupIters) || warmupIters < 0) throw bad(`warmupIters must be an integer >= 0, got ${warmupIters}`);
    if (warmupIters >= totalIters) {
      throw new XtunerError(
        `learning-rate schedule: warm-up (${warmupIters} iterations) must be shorter than the run (${totalIters} iterations)`,
        { hint: 'lower warmup_ratio or train for more iterations' },
      );
    }
    if (!(startFactor >= 0 && startFactor <= 1)) throw bad(`startFactor must be in [0, 1], got ${startFactor}`);
    if (!(etaMin >= 0) || !Number.isFinite(etaMin)) throw bad(`etaMin must be a finite number >= 0, got ${etaMin}`);
    this.baseLr = lr;
    this.totalIters = totalIters;
    this.warmupIters = warmupIters;
    this.startFactor = startFactor;
    this.etaMin = etaMin;
  }

  /** Learning rate in effect during iteration `iter` (0-based). */
  lrAt(iter: number): number {
    const i = Math.min(Math.max(0, Math.floor(iter)), this.totalIters - 1); // after the end mmengine keeps the last value
    const w = this.warmupIters;
    const s = this.startFactor;
    if (i < w) {
      // LinearLR: factor goes from start_factor at i = 0 to 1 at i = w - 1 (total_iters = end - begin - 1)
      return w === 1 ? this.baseLr * s : this.baseLr * (s + ((1 - s) * i) / (w - 1));
    }
    // CosineAnnealingLR (T_max = end - begin) starts from the value warm-up left: the base lr,
    // except for a 1-iteration warm-up, which never leaves start_factor (mmengine's chained form).
    const start = w === 1 ? this.baseLr * s : this.baseLr;
    const tMax = this.totalIters - w;
    return this.etaMin + ((start - this.etaMin) * (1 + Math.cos((Math.PI * (i - w)) / tMax))) / 2;
  }

  get lr(): number {
    return this.lrAt(this.iter);
  }

  /** Advance by one iteration (call after each train iteration). */
  step(): void {
    this.iter++;
  }

  stateDict(): WarmupCosineState {
    return {
      iter: this.iter,
      lr: this.baseLr,
      totalIters: this.totalIters,
      warmupIters: this.warmupIters,
      startFactor: this.startFactor,
      etaMin: this.etaMin,
    };
  }

  /** Restore the position; the schedule itself must be the one the state was saved from. */
  loadStateDict(state: WarmupCosineState): void {
    const mine = this.stateDict();
    for (const key of ['lr', 'totalIters', 'warmupIters', 'startFactor', 'etaMin'] as const) {
      if (state[key] !== mine[key]) {
        throw new XtunerError(
          `learning-rate schedule: the checkpoint's ${key} is ${state[key]}, this run's is ${mine[key]}`,
          { hint: 'resume with the config the checkpoint was trained with' },
        );
      }
    }
    if (!Number.isInteger(state.iter) || state.iter < 0) {
      throw new XtunerError(`learning-rate schedule: bad iteration ${state.iter} in the checkpoint`);
    }
    this.iter = state.iter;
  }
}
