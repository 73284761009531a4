// Shared helpers of the CUDA kernel tests: whether CUDA is usable here (else every test skips with
// the reason), fresh random inputs, running one kernel call on the CPU backend (the reference) and
// on the CUDA backend with the same inputs, and comparing the outputs at named tolerances.

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import type { Backend } from '../../src/backends/backend.ts';
import { cpuBackend } from '../../src/backends/cpu/index.ts';
import { cudaStatus, cudaBackend, CudaStorage } from '../../src/backends/cuda/index.ts';
import { dtypeBytes, f32ToHost, hostToF32, type DType, type FloatDType, type HostArray } from '../../src/tensor/dtype.ts';

const status = cudaStatus();
/** false when CUDA works here, else the reason every CUDA test skips. */
export const SKIP: string | false = status.available ? false : `no usable CUDA here: ${status.reason}`;
if (status.available) console.log(`# CUDA device: ${status.device}`);

/** |cuda - cpu| <= abs * max|cpu| + rel * |cpu| elementwise. */
export interface Tol {
  abs: number;
  rel: number;
}
/** float32 kernels that do the same arithmetic as the CPU in another order. */
export const F32_TOL: Tol = { abs: 1e-5, rel: 1e-5 };
/** float32 results of long reductions (attention gradients, GEMMs with large k). */
export const F32_REDUCE_TOL: Tol = { abs: 1e-4, rel: 1e-4 };
/** bfloat16 outputs: both backends compute in float32 and round once; they may differ by 1 ulp (2^-7). */
export const BF16_TOL: Tol = { abs: 2 ** -8, rel: 2 ** -7 };
/** float16 outputs: 1 ulp is 2^-10. */
export const F16_TOL: Tol = { abs: 2 ** -10, rel: 2 ** -10 };

export function tolFor(dtype: FloatDType, reduce = false): Tol {
  if (dtype === 'bfloat16') return BF16_TOL;
  if (dtype === 'float16') return F16_TOL;
  return reduce ? F32_REDUCE_TOL : F32_TOL;
}

/** The seed of this run's inputs, printed in failures so a run can be reproduced. */
export const SEED = Number(process.env['XTUNER_TEST_SEED'] ?? randomInt(1, 2 ** 31));
let state = SEED;
function rand(): number {
  // mulberry32
  state = (state + 0x6d2b79f5) | 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** Uniform floats in [lo, hi) as the host array of `dtype` (rounded to it). */
export function uniform(dtype: DType, n: number, lo = -2, hi = 2): HostArray {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rand();
  return f32ToHost(v, dtype);
}

/** Integers in [0, max) as int32. */
export function ints(n: number, max: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rand() * max));
}

/**
 * A buffer of a kernel call: `data` to upload, or just a size (zero-filled, as `alloc` gives).
 * `offset` (elements) hands the kernel a view that starts that far into a larger allocation: with
 * an offset that is not a multiple of 8 elements the CUDA pointer is not 16-byte aligned, so the
 * kernels' scalar paths run (allocations themselves are always aligned).
 */
export interface Buf {
  dtype: DType;
  data?: HostArray;
  size?: number;
  offset?: number;
}

type Call = <S>(b: Backend<S>, s: Record<string, S>) => void;

/** Storage `s` from element `offset` on: a typed subarray on the CPU, a shifted pointer on CUDA. */
function viewAt<S>(s: S, dtype: DType, offset: number): S {
  if (offset === 0) return s;
  if (s instanceof CudaStorage) {
    const skip = offset * dtypeBytes(dtype);
    return new CudaStorage(s.ptr + skip, s.bytes - skip, null) as S;
  }
  return (s as HostArray).subarray(offset) as S;
}

function runOn<S>(b: Backend<S>, bufs: Record<string, Buf>, call: Call): Record<string, HostArray> {
  const base: Record<string, S> = {};
  const s: Record<string, S> = {};
  for (const [name, buf] of Object.entries(bufs)) {
    const size = buf.data?.length ?? buf.size ?? 0;
    const offset = buf.offset ?? 0;
    base[name] = b.alloc(buf.dtype, offset + size);
    if (buf.data) b.write(base[name]!, buf.dtype, offset, buf.data);
    s[name] = viewAt(base[name]!, buf.dtype, offset);
  }
  call(b, s);
  const out: Record<string, HostArray> = {};
  for (const [name, buf] of Object.entries(bufs)) {
    out[name] = b.read(base[name]!, buf.dtype, buf.offset ?? 0, buf.data?.length ?? buf.size ?? 0);
    b.free(base[name]!);
  }
  return out;
}

/**
 * Run `call` on the CPU and the CUDA backend with the same buffers and compare the buffers named in
 * `outputs` at `tol` (float dtypes; a function gives each output its own) or exactly (integers).
 * Returns the CUDA results.
 */
export function compareWithCpu(
  what: string, bufs: Record<string, Buf>, outputs: readonly string[], tol: Tol | ((output: string) => Tol), call: Call,
): Record<string, HostArray> {
  const cpu = runOn(cpuBackend as Backend<unknown>, bufs, call);
  const gpu = runOn(cudaBackend() as Backend<unknown>, bufs, call);
  for (const name of outputs) {
    const dtype = bufs[name]!.dtype;
    if (dtype === 'float32' || dtype === 'bfloat16' || dtype === 'float16') {
      assertClose(hostToF32(gpu[name]!, dtype), hostToF32(cpu[name]!, dtype), typeof tol === 'function' ? tol(name) : tol, `${what}: ${name}`);
    } else {
      assertExact(gpu[name]!, cpu[name]!, `${what}: ${name}`); // through float32, ints above 2^24 would compare equal
    }
  }
  return gpu;
}

/** Integer outputs element for element (the first difference named). */
export function assertExact(actual: HostArray, expected: HostArray, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) assert.fail(`${what}: element ${i} is ${actual[i]} on CUDA, ${expected[i]} on CPU (seed ${SEED})`);
  }
}

export function assertClose(actual: Float32Array, expected: Float32Array, tol: Tol, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  let scale = 0;
  for (const v of expected) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    if (Number.isNaN(a) !== Number.isNaN(e)) {
      worst = i;
      worstExcess = Infinity;
      break;
    }
    if (Number.isNaN(e) || a === e) continue;
    const excess = Math.abs(a - e) - (tol.abs * scale + tol.rel * Math.abs(e));
    if (!(excess <= worstExcess)) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    assert.fail(`${what}: element ${worst} is ${actual[worst]} on CUDA, ${expected[worst]} on CPU (tolerance abs ${tol.abs} x ${scale}, rel ${tol.rel}; seed ${SEED})`);
  }
}
