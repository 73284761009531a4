// The attention comparison both attention test files run: one case's forward (out, lse) and
// backward (dq, dk, dv), CUDA against the CPU twin on fresh random inputs, at the named tolerances.

import assert from 'node:assert/strict';
import type { AttentionShape } from '../../src/backends/backend.ts';
import { segments } from '../../src/backends/cpu/attention.ts';
import { padCuSeqlens } from '../../src/models/inputs.ts';
import { hostToF32, type FloatDType } from '../../src/tensor/dtype.ts';
import { compareWithCpu, F32_REDUCE_TOL, SEED, tolFor, uniform, type Buf } from './helpers.ts';

/** onDevice: cuSeqlens also passed on the device, padded as the model pads it (the training path). */
export type Case = Omit<AttentionShape, 'dtype' | 'scale'> & {
  name: string;
  onDevice?: boolean;
  /** element offset of every tensor's view into its allocation (8 keeps 16-bit ones 16-byte aligned, 1 does not) */
  offset?: number;
  backward?: boolean;
};

/** Boundaries of samples cycling through `lengths` until `total` tokens are covered. */
export function samples(total: number, lengths: readonly number[]): Int32Array {
  const cu = [0];
  for (let i = 0; cu[cu.length - 1]! < total; i++) cu.push(Math.min(total, cu[cu.length - 1]! + lengths[i % lengths.length]!));
  return Int32Array.from(cu);
}

export function runAttentionCase(c: Case, dtype: FloatDType): void {
  const { name, onDevice, offset = 0, backward = true, ...rest } = c;
  const shape: AttentionShape = { ...rest, dtype, scale: 1 / Math.sqrt(c.D) };
  const cu = onDevice && c.cuSeqlens ? padCuSeqlens(c.cuSeqlens) : null;
  const cuBuf: Record<string, Buf> = cu ? { cu: { dtype: 'int32', data: cu } } : {};
  const covered = c.cuSeqlens === null || c.cuSeqlens[c.cuSeqlens.length - 1] === c.B * c.Tq;
  const outBuf = (dt: FloatDType, n: number): Buf => (covered ? { dtype: dt, data: uniform(dt, n), offset } : { dtype: dt, size: n, offset });
  const onDev = <S>(s: Record<string, S>) => (cu ? { cuSeqlensOnDevice: { storage: s['cu']!, length: cu.length } } : {});
  const qN = c.B * c.Tq * c.Hq * c.D;
  const kN = c.B * c.Tk * c.Hkv * c.D;
  const what = `attention ${name} ${dtype}`;
  const inputs = {
    q: { dtype, data: uniform(dtype, qN), offset },
    k: { dtype, data: uniform(dtype, kN), offset },
    v: { dtype, data: uniform(dtype, kN), offset },
  };
  const fwd = compareWithCpu(
    what,
    { ...inputs, ...cuBuf, out: outBuf(dtype, qN), lse: outBuf('float32', c.B * c.Hq * c.Tq) },
    ['out', 'lse'],
    tolFor(dtype, true),
    (b, s) => b.attention({ ...shape, ...onDev(s), q: s['q']!, k: s['k']!, v: s['v']!, out: s['out']!, lse: s['lse']! }),
  );
  if (!backward) return;
  // every query row sees one key at most (Tk = 1, one-token samples, or rows of one token): P = 1,
  // dS = dP - delta = 0, so dq and dk are rounding noise: checked near zero, not against the CPU's noise
  const segs = segments(c.B, c.Tq, c.Tk, c.cuSeqlens); // [b, start, qLen, kLen] per segment (samples cut at row ends)
  const oneKey = segs.every((x, i) => i % 4 !== 3 || x <= 1);
  const grads = compareWithCpu(
    `${what} backward`,
    {
      ...inputs,
      ...cuBuf,
      out: { dtype, data: fwd['out']!, offset },
      lse: { dtype: 'float32', data: fwd['lse']!, offset },
      dout: { dtype, data: uniform(dtype, qN), offset },
      dq: { dtype, data: uniform(dtype, qN), offset },
      dk: { dtype, data: uniform(dtype, kN), offset },
      dv: { dtype, data: uniform(dtype, kN), offset },
    },
    oneKey ? ['dv'] : ['dq', 'dk', 'dv'],
    dtype === 'float32' ? F32_REDUCE_TOL : tolFor(dtype),
    (b, s) =>
      b.attentionBackward({
        ...shape, ...onDev(s), q: s['q']!, k: s['k']!, v: s['v']!, out: s['out']!, lse: s['lse']!, dout: s['dout']!, dq: s['dq']!, dk: s['dk']!, dv: s['dv']!,
      }),
  );
  if (oneKey) {
    for (const g of ['dq', 'dk']) {
      const worst = hostToF32(grads[g]!, dtype).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      assert.ok(worst <= 1e-3, `${what} backward: ${g} should be ~0 (one key per row), max |${g}| = ${worst} (seed ${SEED})`);
    }
  }
}
