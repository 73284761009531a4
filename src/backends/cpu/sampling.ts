// Choosing a token from a row of logits, the kernels' CPU twins (native/cuda/sampling.cu): the
// first index of the largest logit, and the candidates of Hugging Face's temperature then top-k.
// The pure functions under them (argmax, kthLargest, candidates) serve src/generate/sampling.ts
// as well.

import type { FloatDType } from '../../tensor/dtype.ts';
import { f32Of, type CpuStorage } from './storage.ts';

/** First index of the largest value (torch.argmax picks the first on ties too). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
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

/** The tokens still in play after top-k: their ids in ascending order, and their logits. */
export interface Candidates {
  ids: Int32Array;
  logits: Float32Array;
}

/**
 * The tokens of a full row of logits that top-k keeps (k 0: all), those at -Infinity left out
 * (they have no mass). Later steps work on these few instead of the whole vocabulary: at 150k
 * tokens, each full-length temporary cost more than the rest of the choice.
 */
export function candidates(logits: Float32Array, k: number): Candidates {
  const kth = k > 0 && k < logits.length ? kthLargest(logits, k) : -Infinity;
  let n = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i]! >= kth && logits[i] !== -Infinity) n++;
  const c = { ids: new Int32Array(n), logits: new Float32Array(n) };
  n = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v >= kth && v !== -Infinity) {
      c.ids[n] = i;
      c.logits[n++] = v;
    }
  }
  return c;
}

/** out[0] = argmax of x[0..n). */
export function sampleArgmax(x: CpuStorage, n: number, dtype: FloatDType, out: CpuStorage): void {
  (out as Int32Array)[0] = argmax(f32Of(x, dtype).subarray(0, n));
}

/**
 * Backend.topKCandidates: every i with fl(x_i / t) >= (the k-th largest of them), x_i not -inf,
 * into out = [count | ids[cap] | values[cap] as float32 bits], ids ascending here.
 */
export function topKCandidates(x: CpuStorage, n: number, k: number, temperature: number, dtype: FloatDType, out: CpuStorage, cap: number): void {
  const src = f32Of(x, dtype);
  const scaled = new Float32Array(n);
  for (let i = 0; i < n; i++) scaled[i] = src[i]! / temperature;
  const c = candidates(scaled, k);
  const o = out as Int32Array;
  const kept = Math.min(cap, c.ids.length);
  o[0] = c.ids.length;
  o.set(c.ids.subarray(0, kept), 1);
  new Float32Array(o.buffer, o.byteOffset + 4 * (1 + cap), cap).set(c.logits.subarray(0, kept));
}
