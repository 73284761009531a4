// Choosing the next token from one row of logits, with Hugging Face's semantics and order:
// repetition penalty, then temperature, top-k, top-p, then a draw (or argmax when greedy).
// Pure functions over Float32Array; no tensors, no model.

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
  if (!(k > 0) || k >= logits.length) return;
  const kth = kthLargest(logits, k);
  for (let i = 0; i < logits.length; i++) if (logits[i]! < kth) logits[i] = -Infinity;
}

/**
 * The k-th largest value (k <= length), NaN-free input: a min-heap of the k largest seen so far,
 * O(n log k), where sorting a 150k-token vocabulary per generated token cost ~20 ms.
 */
export function kthLargest(values: Float32Array, k: number): number {
  const heap = new Float32Array(k); // heap[0] is the smallest of the k kept
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      if (l >= k) return;
      const c = l + 1 < k && heap[l + 1]! < heap[l]! ? l + 1 : l;
      if (heap[c]! >= heap[i]!) return;
      [heap[c], heap[i]] = [heap[i]!, heap[c]!];
      i = c;
    }
  };
  heap.set(values.subarray(0, k));
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(i);
  for (let i = k; i < values.length; i++) {
    if (values[i]! > heap[0]!) {
      heap[0] = values[i]!;
      siftDown(0);
    }
  }
  return heap[0]!;
}

/**
 * HF TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability stays at or
 * below 1 - p, always keep the most likely one. In place.
 */
export function applyTopP(logits: Float32Array, p: number): void {
  if (!(p < 1)) return;
  const probs = softmax(logits);
  // Tokens already at -Infinity (e.g. after top-k) have no mass: leave them out of the sort.
  const order: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] !== -Infinity) order.push(i);
  order.sort((a, b) => logits[a]! - logits[b]! || a - b);
  let cum = 0;
  for (let r = 0; r < order.length - 1; r++) {
    cum += probs[order[r]!]!;
    if (cum <= 1 - p) logits[order[r]!] = -Infinity;
    else break;
  }
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

/** First index of the largest value (torch.argmax picks the first on ties too). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
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
  if (opts.topK) applyTopK(logits, opts.topK);
  if (opts.topP !== undefined) applyTopP(logits, opts.topP);
  const probs = softmax(logits);
  const u = uniform();
  let cum = 0;
  for (let i = 0; i < probs.length; i++) {
    cum += probs[i]!;
    if (u < cum && probs[i]! > 0) return i;
  }
  // Rounding left u above the last sum: take the last token with any mass.
  for (let i = probs.length - 1; i >= 0; i--) if (probs[i]! > 0) return i;
  return argmax(logits);
}
