// Training log: one JSON line per logged iteration in `logs.jsonl`, and the same numbers on the
// terminal (a progress bar redrawn in place on a TTY, plain lines otherwise, as in a CI log).
// Messages (checkpoints, eval-chat, resume) go to the terminal only. Knows nothing of models.
// A log line is appended whole (one small write); rewriting the log goes through an atomic write.

import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.ts';
import { LOGS_FILE } from './work-dir.ts';

export interface StepRecord {
  iter: number; // 1-based iteration (one batch) just finished
  maxIters: number;
  epoch: number; // 1-based
  loss: number; // mean of the iterations' losses since the last log line
  lr: number; // in effect at this iteration
  gradNorm: number | null; // before clipping, mean over the optimizer steps since the last log line; null: none
  tokens: number; // tokens since the last log line (padding excluded)
  tokensPerSec: number; // over the iterations since the last log line
  secPerIter: number;
  etaSec: number;
  memoryMB: number; // peak since start: on CUDA the allocator's blocks in use, on the CPU the tensors' bytes
  rssMB: number;
}

export interface Output {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class TrainLogger {
  private readonly logsFile: string;
  private barShown = false;

  constructor(
    workDir: string,
    private readonly out: Output = process.stdout,
  ) {
    this.logsFile = path.join(workDir, LOGS_FILE);
  }

  /** A logged iteration: to logs.jsonl and as a permanent terminal line. */
  step(r: StepRecord): void {
    fs.appendFileSync(
      this.logsFile,
      `${JSON.stringify({
        iter: r.iter,
        epoch: r.epoch,
        loss: r.loss,
        lr: r.lr,
        grad_norm: r.gradNorm,
        tokens: r.tokens,
        tokens_per_sec: round(r.tokensPerSec, 1),
        sec_per_iter: round(r.secPerIter, 4),
        eta_sec: Math.round(r.etaSec),
        memory_mb: round(r.memoryMB, 1),
        rss_mb: round(r.rssMB, 1),
        time: new Date().toISOString(),
      })}\n`,
    );
    this.info(formatStep(r));
  }

  /**
   * Resuming from iteration `iter`: log lines after it (written by the run that went on past its
   * last checkpoint) would be repeated, so they leave logs.jsonl for `logs.after-<iter>-<time>.jsonl`.
   */
  rewindTo(iter: number): void {
    if (!fs.existsSync(this.logsFile)) return;
    const lines = fs.readFileSync(this.logsFile, 'utf8').split('\n').filter((l) => l.trim() !== '');
    const keep = lines.filter((l) => {
      try {
        return (JSON.parse(l) as { iter?: number }).iter! <= iter;
      } catch {
        return true;
      }
    });
    if (keep.length === lines.length) return;
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    fs.copyFileSync(this.logsFile, path.join(path.dirname(this.logsFile), `logs.after-${iter}-${stamp}.jsonl`));
    writeFileAtomic(this.logsFile, keep.map((l) => `${l}\n`).join(''));
  }

  /** Redraws the progress bar (TTY only; a no-op when stdout is a file or a pipe). */
  progress(iter: number, maxIters: number, loss: number, etaSec: number): void {
    if (!this.out.isTTY) return;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - 50));
    const done = Math.round((width * iter) / Math.max(1, maxIters));
    const bar = `${'█'.repeat(done)}${'░'.repeat(width - done)}`;
    this.out.write(`\r\x1b[2K${bar} ${iter}/${maxIters}  loss ${loss.toFixed(4)}  eta ${formatDuration(etaSec)}`);
    this.barShown = true;
  }

  /** A message line; clears the progress bar first so the two never mix. */
  info(message: string): void {
    if (this.barShown) {
      this.out.write('\r\x1b[2K');
      this.barShown = false;
    }
    this.out.write(`${message}\n`);
  }

  /** Leaves the terminal on a clean line (the bar, if any, is erased). */
  close(): void {
    if (this.barShown) this.out.write('\r\x1b[2K');
    this.barShown = false;
  }
}

export function formatStep(r: StepRecord): string {
  const width = String(r.maxIters).length;
  return [
    `Iter(train) [${String(r.iter).padStart(width)}/${r.maxIters}]`,
    `epoch: ${r.epoch}`,
    `lr: ${r.lr.toExponential(4)}`,
    `eta: ${formatDuration(r.etaSec)}`,
    `time: ${r.secPerIter.toFixed(3)}`,
    `loss: ${r.loss.toFixed(4)}`,
    ...(r.gradNorm === null ? [] : [`grad_norm: ${r.gradNorm.toFixed(4)}`]),
    `tokens/s: ${Math.round(r.tokensPerSec)}`,
    `memory: ${Math.round(r.memoryMB)} MB (rss ${Math.round(r.rssMB)} MB)`,
  ].join('  ');
}

/** 3725 -> "1:02:05", as mmengine prints its ETA. */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '--:--:--';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}:${String(m).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
