// Shared by the peft/quant/optim tests: fixture reading, comparisons at the brief's tolerances,
// temporary folders. Not a test file itself.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsReader, hostToFloat32 } from '../../src/io/safetensors.ts';

import { GRAD_RTOL, LOGITS_ATOL, MODELS, assertClose, maxAbsDiff } from '../models/fixtures.ts';

export { assertClose, maxAbsDiff };
export const FIX = MODELS;
export const BASE_MODEL = `${FIX}/llama_forward/model`;
export const LORA_ADAPTER = `${FIX}/lora/adapter`;
/** Float32 tolerances of the fixtures README (test/models/fixtures.ts): logits and loss absolute, gradients relative to the tensor's max |value|. */
export const LOGITS_TOL = LOGITS_ATOL;
export const GRAD_REL_TOL = GRAD_RTOL;
/** The seven linear kinds of the fixture's LoRA (PEFT target_modules). */
export const LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

export interface Expected {
  ids: number[][];
  labels: number[][];
  get(name: string): Float32Array;
  shape(name: string): readonly number[];
  names(): string[];
}

/** The `expected.safetensors` of a fixture case, with ids as number[][]. */
export function readExpected(caseName: string): Expected {
  const r = SafetensorsReader.open(`${FIX}/${caseName}/expected.safetensors`);
  const cache = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const n of r.names()) {
    const t = r.read(n);
    cache.set(n, { shape: t.shape, data: hostToFloat32(t) });
  }
  r.close();
  const rows = (name: string): number[][] => {
    const t = cache.get(name)!;
    const [b, s] = t.shape as [number, number];
    return Array.from({ length: b }, (_, i) => Array.from(t.data.subarray(i * s, (i + 1) * s)));
  };
  return {
    ids: rows('input_ids'),
    labels: rows('labels'),
    get: (name) => {
      const t = cache.get(name);
      assert.ok(t, `fixture has no '${name}'`);
      return t.data;
    },
    shape: (name) => cache.get(name)!.shape,
    names: () => [...cache.keys()],
  };
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** |a - b| <= rel * max |b| everywhere (the brief's gradient tolerance). */
export function assertCloseRel(a: ArrayLike<number>, b: ArrayLike<number>, rel: number, what: string): void {
  const d = maxAbsDiff(a, b);
  const scale = maxAbs(b);
  assert.ok(d <= rel * scale, `${what}: max abs diff ${d} > ${rel} x ${scale}`);
}

export function tmpDir(t: { after: (fn: () => void) => void }, prefix = 'xtuner-peft-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** PEFT's trained-parameter name for our module path (`base_model.model.<path>.lora_A.default.weight`). */
export function peftParamName(modulePath: string, which: 'A' | 'B'): string {
  return `base_model.model.${modulePath}.lora_${which}.default.weight`;
}
