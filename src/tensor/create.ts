// Creating tensors: from host data (typed arrays or nested number arrays), filled, or random.

import type { Device } from '../backends/index.ts';
import { XtunerError } from '../errors.ts';
import { dtypeOfHost, toHostOf, type DType, type HostArray } from './dtype.ts';
import { Rng } from './rng.ts';
import { fmt, sizeOf } from './shape.ts';
import { Tensor } from './tensor.ts';

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

type Nested = number | readonly Nested[];

function flatten(data: Nested, shape: number[], out: number[], depth: number): void {
  if (typeof data === 'number') {
    if (depth !== shape.length) throw new XtunerError(`tensor(): ragged nested array (a number at depth ${depth})`);
    out.push(data);
    return;
  }
  if (depth === shape.length) shape.push(data.length);
  else if (shape[depth] !== data.length) {
    throw new XtunerError(`tensor(): ragged nested array (length ${data.length} where ${shape[depth]} was seen at depth ${depth})`);
  }
  for (const d of data) flatten(d, shape, out, depth + 1);
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}

/**
 * A tensor from host data. Typed arrays give their dtype (Uint16Array needs dtype bfloat16 or
 * float16: its elements are the bits); nested number arrays give float32 unless `dtype` says
 * otherwise. `shape` defaults to the data's own (flat length for typed arrays).
 */
export function tensor(data: HostArray | Nested, shape?: readonly number[], opts: TensorOptions = {}): Tensor {
  let host: HostArray;
  let inferred: number[];
  if (ArrayBuffer.isView(data)) {
    const arr = data as HostArray;
    const half = opts.dtype === 'bfloat16' || opts.dtype === 'float16' ? opts.dtype : null;
    const from = dtypeOfHost(arr, half);
    if (from === null) {
      throw new XtunerError('tensor(): a Uint16Array holds 16-bit float bits; pass { dtype: "bfloat16" } or { dtype: "float16" }');
    }
    host = toHostOf(arr, opts.dtype ?? from);
    inferred = [arr.length];
  } else {
    inferred = [];
    const flat: number[] = [];
    flatten(data as Nested, inferred, flat, 0);
    const isInt = opts.dtype === 'int32' || opts.dtype === 'int64' || opts.dtype === 'uint8';
    host = isInt ? toHostOf(Int32Array.from(flat), opts.dtype!) : toHostOf(Float32Array.from(flat), opts.dtype ?? 'float32');
  }
  const dtype = opts.dtype ?? dtypeOfHost(host)!;
  const finalShape = shape ?? inferred;
  if (sizeOf(finalShape) !== host.length) {
    throw new XtunerError(`tensor(): ${host.length} values do not fill shape ${fmt(finalShape)}`);
  }
  const t = Tensor._alloc(finalShape, dtype, opts.device ?? 'cpu');
  t.backend.write(t.storage, dtype, 0, host); // copies
  return finish(t, opts);
}

export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return finish(Tensor._alloc(shape, opts.dtype ?? 'float32', opts.device ?? 'cpu'), opts);
}

export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  const t = Tensor._alloc(shape, opts.dtype ?? 'float32', opts.device ?? 'cpu');
  t.backend.fill(t.storage, t.dtype, 0, t.size, value);
  return finish(t, opts);
}

export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

export function zerosLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return zeros(t.shape, { dtype: t.dtype, device: t.device, ...opts });
}

export function onesLike(t: Tensor, opts: TensorOptions = {}): Tensor {
  return ones(t.shape, { dtype: t.dtype, device: t.device, ...opts });
}

/** The process-wide generator used when no `rng` is passed. */
export const defaultRng = new Rng(0);

export function manualSeed(seed: number): void {
  defaultRng.seed(seed);
}

export interface RandomOptions extends TensorOptions {
  rng?: Rng;
}

/** Normal(mean, std) samples. */
export function randn(shape: readonly number[], opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  const rng = opts.rng ?? defaultRng;
  const mean = opts.mean ?? 0;
  const std = opts.std ?? 1;
  const v = new Float32Array(sizeOf(shape));
  for (let i = 0; i < v.length; i++) v[i] = mean + std * rng.normal();
  return tensor(v, shape, { ...opts, dtype: opts.dtype ?? 'float32' });
}

/** Uniform [low, high) samples. */
export function rand(shape: readonly number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const rng = opts.rng ?? defaultRng;
  const low = opts.low ?? 0;
  const high = opts.high ?? 1;
  const v = new Float32Array(sizeOf(shape));
  for (let i = 0; i < v.length; i++) v[i] = low + (high - low) * rng.uniform();
  return tensor(v, shape, { ...opts, dtype: opts.dtype ?? 'float32' });
}
