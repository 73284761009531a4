// Host-side checks of what callers pass to CausalLM.forward: ids, labels, position ids and packed
// boundaries, as `number[][]` or `{ data: Int32Array, shape: [B, T] }`. Every mistake is an
// XtunerError naming the argument, before any tensor is made.

import { XtunerError } from '../errors.ts';

export type IdsInput = number[][] | { data: Int32Array; shape: readonly [number, number] | readonly number[] };

export interface IdBatch {
  data: Int32Array; // [B, T] row-major
  b: number;
  t: number;
}

export function toIdBatch(input: IdsInput, arg: string): IdBatch {
  if (Array.isArray(input)) {
    const b = input.length;
    const t = b > 0 && Array.isArray(input[0]) ? input[0].length : 0;
    if (b === 0 || t === 0) throw new XtunerError(`${arg}: expected a non-empty number[][] of shape [B, T]`);
    const data = new Int32Array(b * t);
    input.forEach((row, i) => {
      if (!Array.isArray(row) || row.length !== t) throw new XtunerError(`${arg}: row ${i} has length ${Array.isArray(row) ? row.length : 'n/a'}, expected ${t} (rows must be equal; pad them)`);
      row.forEach((v, j) => {
        if (!Number.isInteger(v)) throw new XtunerError(`${arg}[${i}][${j}] = ${v} is not an integer`);
        data[i * t + j] = v;
      });
    });
    return { data, b, t };
  }
  const shape = input?.shape;
  if (!(input?.data instanceof Int32Array) || !Array.isArray(shape) || shape.length !== 2) {
    throw new XtunerError(`${arg}: expected number[][] or { data: Int32Array, shape: [B, T] }`);
  }
  const [b, t] = shape as [number, number];
  if (!(b > 0 && t > 0) || b * t !== input.data.length) {
    throw new XtunerError(`${arg}: shape [${shape.join(', ')}] does not match ${input.data.length} values`);
  }
  return { data: input.data, b, t };
}

export function checkVocab(ids: IdBatch, vocabSize: number, arg: string): void {
  for (let i = 0; i < ids.data.length; i++) {
    const id = ids.data[i]!;
    if (id < 0 || id >= vocabSize) {
      throw new XtunerError(`${arg}[${Math.floor(i / ids.t)}][${i % ids.t}] = ${id} is out of the vocabulary [0, ${vocabSize})`);
    }
  }
}

export function checkSameShape(x: IdBatch, ids: IdBatch, arg: string): void {
  if (x.b !== ids.b || x.t !== ids.t) throw new XtunerError(`${arg}: shape [${x.b}, ${x.t}] differs from inputIds [${ids.b}, ${ids.t}]`);
}

/** Position ids 0..T-1 for every row. */
export function defaultPositions(b: number, t: number, start = 0): Int32Array {
  const pos = new Int32Array(b * t);
  for (let i = 0; i < b; i++) for (let j = 0; j < t; j++) pos[i * t + j] = start + j;
  return pos;
}

/** Boundaries over the flattened B*T tokens: starts at 0, strictly increasing, ends at B*T. */
export function checkCuSeqlens(cu: Int32Array | readonly number[], total: number): Int32Array {
  const arr = cu instanceof Int32Array ? cu : Int32Array.from(cu);
  const ok = arr.length >= 2 && arr[0] === 0 && arr[arr.length - 1] === total && arr.every((v, i) => i === 0 || v > arr[i - 1]!);
  if (!ok) {
    throw new XtunerError(`cuSeqlens [${[...arr].join(', ')}] must start at 0, increase strictly and end at B*T = ${total}`);
  }
  return arr;
}

/** Smallest capacity of a padded cuSeqlens (entries). */
const CU_SEQLENS_MIN_CAPACITY = 16;

/**
 * cuSeqlens padded with its last value (zero-length samples) to a power-of-two capacity: the
 * length of its device copy, and so the attention grids sized by it, change only when a step's
 * sample count crosses a power of two, not with every packing (a CUDA graph replays fixed grids).
 */
export function padCuSeqlens(cu: Int32Array): Int32Array {
  let cap = CU_SEQLENS_MIN_CAPACITY;
  while (cap < cu.length) cap *= 2;
  const out = new Int32Array(cap).fill(cu[cu.length - 1]!);
  out.set(cu);
  return out;
}

/**
 * HF causal-LM targets: position t is scored against labels[t + 1] of the same row; the last
 * position of each row has no target (-100).
 */
export function shiftLabels(labels: IdBatch, ignoreIndex = -100): Int32Array {
  const { data, b, t } = labels;
  const out = new Int32Array(b * t).fill(ignoreIndex);
  for (let i = 0; i < b; i++) for (let j = 0; j + 1 < t; j++) out[i * t + j] = data[i * t + j + 1]!;
  return out;
}
