// Gradient accumulation as mmengine's OptimWrapper does it for XTuner's `accumulative_counts`:
// every iteration (one batch) back-propagates loss / factor, and the optimizer steps after the
// iterations whose count is a multiple of `accumulative_counts`, and after the last one. When the
// run's length is not a multiple, the last group is shorter and its losses are divided by its own
// length (OptimWrapper.scale_loss with `_remainder_counts`), so every step averages its batches.
// Iterations are counted from the start of the run, resumed or not (initialize_count_status).

export class Accumulation {
  constructor(
    readonly counts: number,
    readonly maxIters: number,
  ) {}

  /** What the loss of iteration `i` (0-based) is divided by before backward. */
  lossFactor(i: number): number {
    const remainder = this.maxIters % this.counts;
    return i < this.maxIters - remainder ? this.counts : remainder;
  }

  /** True when the optimizer steps after iteration `i` (0-based). */
  stepsAfter(i: number): boolean {
    return (i + 1) % this.counts === 0 || i + 1 === this.maxIters;
  }

  /** True when, after `done` iterations, gradients of an unfinished group wait for their step. */
  pendingAfter(done: number): boolean {
    return done > 0 && !this.stepsAfter(done - 1);
  }
}
