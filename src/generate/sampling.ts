// Choosing the next token from one row of logits, with Hugging Face's semantics and order:
// repetition penalty, then temperature, top-k, top-p, then a draw (or argmax when greedy).
// Pure functions over Float32Array; pickFromRow takes a LogitsRow instead, a row that may stay on
// its device (./logits-row.ts), and reads only the candidates (or the id) back from it.

import { argmax, candidates, kthLargest, type Candidates } from '../backends/cpu/sampling.ts';

export { argmax, candidates, kthLargest, type Candidates };

export interface SamplingOptions {
  /** 0 or undefined: greedy (argmax). > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Keep the k most likely tokens (ties with the k-th kept, as HF does). 0/undefined: off. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p. 1/undefined: off. */
  topP?: number;
  /** > 1 discourages tokens already in the context (HF: divide positive logits, multiply negative). */
  repetitionPenalty?: number;
}

/** HF RepetitionPenaltyLogitsProcessor: each distinct id seen once, in place. */
export function applyRepetitionPenalty(logits: Float32Array, context: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(context)) {
    const s = logits[id]!;
    logits[id] = s < 0 ? s * penalty : s / penalty;
  }
}

/** HF TopKLogitsWarper: tokens below the k-th largest logit get -Infinity, in place. */
export function applyTopK(logits: Float32Array, k: number): void {
  keepOnly(logits, candidates(logits, k));
}

/** logits[i] = -Infinity for every token not among the candidates, in place. */
function keepOnly(logits: Float32Array, c: Candidates): void {
  let j = 0;
  for (let i = 0; i < logits.length; i++) {
    if (c.ids[j] === i) j++;
    else logits[i] = -Infinity;
  }
}

/**
 * HF TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability stays at or
 * below 1 - p, always keep the most likely one. In place.
 */
export function applyTopP(logits: Float32Array, p: number): void {
  keepOnly(logits, topP(candidates(logits, 0), p));
}

/** applyTopP over candidates: those it keeps, still in ascending id order. */
export function topP(c: Candidates, p: number): Candidates {
  if (!(p < 1)) return c;
  const probs = softmax(c.logits);
  const order = Array.from(c.ids.keys()).sort((a, b) => c.logits[a]! - c.logits[b]! || a - b);
  const drop = new Uint8Array(c.ids.length);
  // in float32, as HF's float32 cumsum against float32(1 - p): at a boundary (ties, p = 0.9) the
  // float64 sums kept a token HF drops
  const threshold = Math.fround(1 - p);
  let cum = 0;
  for (let r = 0; r < order.length - 1; r++) {
    cum = Math.fround(cum + Math.fround(probs[order[r]!]!));
    if (cum <= threshold) drop[order[r]!] = 1;
    else break;
  }
  const kept = c.ids.length - drop.reduce((a, b) => a + b, 0);
  const out = { ids: new Int32Array(kept), logits: new Float32Array(kept) };
  for (let i = 0, n = 0; i < c.ids.length; i++) {
    if (drop[i]) continue;
    out.ids[n] = c.ids[i]!;
    out.logits[n++] = c.logits[i]!;
  }
  return out;
}

export function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v !== -Infinity) sum += out[i] = Math.exp(v - max); // masked tokens (most, after top-k) stay 0
  }
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

/**
 * The next token for one row. `logits` is modified. `context` is every id so far (prompt and
 * generated), for the repetition penalty; `uniform` draws from [0, 1).
 */
export function pickToken(logits: Float32Array, context: Iterable<number>, opts: SamplingOptions, uniform: () => number): number {
  if (opts.repetitionPenalty !== undefined) applyRepetitionPenalty(logits, context, opts.repetitionPenalty);
  const t = opts.temperature ?? 0;
  if (!(t > 0)) return argmax(logits);
  for (let i = 0; i < logits.length; i++) logits[i] = logits[i]! / t;
  const c = topP(candidates(logits, opts.topK ?? 0), opts.topP ?? 1);
  if (c.ids.length === 0) return argmax(logits); // every logit -Infinity
  return draw(c, uniform);
}

/** One row of next-token logits, wherever it lies: choosing a token reads only what it needs (./logits-row.ts). */
export interface LogitsRow {
  /** Its length: the vocabulary. */
  readonly size: number;
  /** The whole row on the host. */
  toFloat32Array(): Float32Array;
  /** The first index of the largest logit. */
  argmax(): number;
  /** candidates(row / temperature, k) for 1 <= k < size, or null where more tie than are sent back. */
  topK(k: number, temperature: number): Candidates | null;
  /** Lets the row go. */
  dispose(): void;
}

/**
 * pickToken over a row that may lie on the device: greedy reads one id of it, and top-k sampling
 * (chat's default) its candidates, instead of the whole row; a repetition penalty, sampling
 * without top-k, or more ties than come back read the row and go through pickToken.
 */
export function pickFromRow(row: LogitsRow, context: Iterable<number>, opts: SamplingOptions, uniform: () => number): number {
  const t = opts.temperature ?? 0;
  const k = opts.topK ?? 0;
  if ((opts.repetitionPenalty ?? 1) === 1) {
    if (!(t > 0)) return row.argmax();
    const c = k > 0 && k < row.size ? row.topK(k, t) : null;
    if (c && c.ids.length > 0) return draw(topP(c, opts.topP ?? 1), uniform);
  }
  return pickToken(row.toFloat32Array(), context, opts, uniform);
}

/** Inverts the CDF of softmax(candidates) in id order (the other tokens have no mass); c not empty. */
function draw(c: Candidates, uniform: () => number): number {
  const probs = softmax(c.logits);
  const u = uniform();
  let cum = 0;
  for (let i = 0; i < probs.length; i++) {
    cum += probs[i]!;
    if (u < cum && probs[i]! > 0) return c.ids[i]!;
  }
  // Rounding left u above the last sum: take the last token with any mass.
  for (let i = probs.length - 1; i >= 0; i--) if (probs[i]! > 0) return c.ids[i]!;
  return c.ids[c.ids.length - 1]!;
}
