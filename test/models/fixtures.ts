// Shared helpers of the model tests: reading the reference fixtures and comparing numbers at the
// tolerances of test/fixtures/README.md.

import assert from 'node:assert/strict';
import { SafetensorsReader, hostToFloat32, type HostTensor } from '../../src/io/safetensors.ts';
import type { Module } from '../../src/nn/index.ts';
import { tidy, type Tensor } from '../../src/tensor/index.ts';

export const MODELS = 'test/fixtures/models';
/** float32 tolerances from the fixtures README. */
export const LOGITS_ATOL = 1e-4;
export const LOSS_ATOL = 1e-4;
export const GRAD_RTOL = 1e-3;

/** Every tensor of a case's expected.safetensors. */
export function readExpected(caseName: string): Map<string, HostTensor> {
  const r = SafetensorsReader.open(`${MODELS}/${caseName}/expected.safetensors`);
  try {
    return new Map(r.names().map((n) => [n, r.read(n)]));
  } finally {
    r.close();
  }
}

export function get(m: Map<string, HostTensor>, name: string): HostTensor {
  const t = m.get(name);
  assert.ok(t, `fixture has no '${name}'`);
  return t;
}

/** An integer [B, T] fixture tensor as rows of numbers. */
export function rows(t: HostTensor): number[][] {
  const [b, n] = t.shape as [number, number];
  const flat = Array.from(t.data as ArrayLike<number | bigint>, Number);
  return Array.from({ length: b }, (_, i) => flat.slice(i * n, (i + 1) * n));
}

export function floats(t: HostTensor): Float32Array {
  return hostToFloat32(t);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, what: string): void {
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= atol, `${what}: max |diff| ${d} > ${atol}`);
}

/** Gradient check: max |diff| within GRAD_RTOL of the expected tensor's max |value|. */
export function assertGradClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  assert.ok(scale > 0, `${what}: expected gradient is all zeros (fixture cannot discriminate)`);
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= GRAD_RTOL * scale, `${what}: max |diff| ${d} > ${GRAD_RTOL} x ${scale}`);
}

/** Runs `forward` (which returns a loss), backward, and returns the loss and every parameter's gradient by name; grads are cleared after. */
export function lossAndGrads(m: Module, forward: () => { loss?: Tensor }): { loss: number; grads: Map<string, Float32Array> } {
  const loss = tidy(() => {
    const { loss } = forward();
    loss!.backward();
    return loss!.item();
  });
  const grads = new Map<string, Float32Array>();
  for (const [n, p] of m.namedParameters()) {
    grads.set(n, p.grad!.toFloat32Array());
    p.grad!.dispose();
    p.grad = null;
  }
  return { loss, grads };
}
