// Test helper (not a test): checks an op's float32 forward against an independent float64
// reference written in plain JS, and its backward against central finite differences of that
// reference. The loss is L = sum(out * G) for a fixed random G, so every output element matters.

import assert from 'node:assert/strict';
import { Rng, tensor, tidy, type Tensor } from '../../src/tensor/index.ts';

/** float32 forward vs float64 reference: kernels round each product/sum to float32 (~6e-8
 * relative) over reductions of up to a few hundred terms, so 1e-5 of the output scale is ample
 * and still catches any wrong formula. */
export const FWD_TOL = 1e-5;
/** Analytic float32 gradient vs float64 finite differences: float32 rounding in the backward
 * (~1e-6 relative after accumulation) plus the O(h^2) difference error (h = 1e-4 on smooth
 * functions, < 1e-8); 1e-4 of the gradient's max magnitude leaves a wide margin below any real bug. */
export const GRAD_TOL = 1e-4;
const H = 1e-4;

export interface InputSpec {
  shape: number[];
  /** 'positive' draws from [0.5, 2] (for log, sqrt, div); default normal(0, 1). */
  kind?: 'normal' | 'positive';
  /** No gradient checked for this input. */
  noGrad?: boolean;
}

export type Ref = (xs: Float64Array[]) => Float64Array;

export function randomValues(rng: Rng, n: number, kind: InputSpec['kind'] = 'normal'): Float64Array {
  const v = new Float64Array(n);
  // values exactly representable in float32, so both sides see the same inputs
  for (let i = 0; i < n; i++) v[i] = Math.fround(kind === 'positive' ? 0.5 + 1.5 * rng.uniform() : rng.normal());
  return v;
}

export function maxAbs(v: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]!));
  return m;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, relTol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const scale = Math.max(1e-6, maxAbs(expected));
  let worst = 0;
  let at = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  assert.ok(worst <= relTol * scale, `${what}: max error ${worst} at ${at} (got ${actual[at]}, want ${expected[at]}) > ${relTol} x ${scale}`);
}

/**
 * Run the check for one set of shapes and a seed. `op` gets float32 tensors in the order of
 * `inputs` and returns the output tensor; `ref` computes the same in float64.
 * `maxProbes` limits the finite-difference probes per input (random elements) for big inputs.
 */
export function gradCheck(name: string, inputs: InputSpec[], op: (ts: Tensor[]) => Tensor, ref: Ref, seed: number, maxProbes = 200): void {
  const rng = new Rng(seed);
  const xs = inputs.map((s) => randomValues(rng, s.shape.reduce((a, b) => a * b, 1), s.kind));
  const want = ref(xs);
  const g = randomValues(rng, want.length);
  tidy(() => {
    const ts = inputs.map((s, i) => tensor(Float32Array.from(xs[i]!), s.shape, { requiresGrad: !s.noGrad }));
    const out = op(ts);
    assert.equal(out.size, want.length, `${name}: output size`);
    assertClose(out.toFloat32Array(), want, FWD_TOL, `${name} forward (seed ${seed})`);
    out.backward(tensor(Float32Array.from(g), out.shape));
    const loss = (vals: Float64Array[]): number => {
      const y = ref(vals);
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i]! * g[i]!;
      return s;
    };
    inputs.forEach((s, i) => {
      if (s.noGrad) return;
      const analytic = ts[i]!.grad!.toFloat32Array();
      const x = xs[i]!;
      const probes = x.length <= maxProbes ? [...x.keys()] : Array.from({ length: maxProbes }, () => rng.int(x.length));
      const num = new Float64Array(probes.length);
      const got = new Float64Array(probes.length);
      probes.forEach((j, p) => {
        const orig = x[j]!;
        x[j] = orig + H;
        const up = loss(xs);
        x[j] = orig - H;
        const down = loss(xs);
        x[j] = orig;
        num[p] = (up - down) / (2 * H);
        got[p] = analytic[j]!;
      });
      // scale by the whole gradient's magnitude, as the brief's tolerance rule says
      const scale = Math.max(maxAbs(num), 1e-3);
      let worst = 0;
      for (let p = 0; p < probes.length; p++) worst = Math.max(worst, Math.abs(got[p]! - num[p]!));
      assert.ok(worst <= GRAD_TOL * scale, `${name} grad of input ${i} (seed ${seed}): max error ${worst} > ${GRAD_TOL} x ${scale}`);
    });
  });
}

/** RMSNorm over rows of x [rows, H] with weight w [H], float64 (Llama's definition). */
export function rmsNormRef(rows: number, H: number, eps: number): Ref {
  return ([x, w]) => {
    const out = new Float64Array(rows * H);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let c = 0; c < H; c++) ss += x![r * H + c]! ** 2;
      const rs = 1 / Math.sqrt(ss / H + eps);
      for (let c = 0; c < H; c++) out[r * H + c] = x![r * H + c]! * rs * w![c]!;
    }
    return out;
  };
}
