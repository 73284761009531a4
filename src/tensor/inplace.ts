// In-place updates outside autograd, for optimizers, loading and merging: assign, the AdamW step
// over many tensors, the global gradient norm with its clip coefficient (left on the device),
// scale/add/fill in place; and one read-back for several scalars.

import type { AdamWHyper, AdamWTensor, Device, Storage } from '../backends/index.ts';
import { ADAMW_STATE_WORDS, adamwStateWords } from '../backends/backend.ts';
import { XtunerError } from '../errors.ts';
import { cast } from './ops/cast.ts';
import { concat } from './ops/concat.ts';
import { reshape } from './ops/reshape.ts';
import { castRaw, checkDevice, empty } from './ops/util.ts';
import { markWritten } from './engine.ts';
import { isFloatDType } from './dtype.ts';
import { noGrad, tidy } from './scope.ts';
import { fmt, sameShape } from './shape.ts';
import type { Tensor } from './tensor.ts';
import type { HostArray } from './dtype.ts';

/** Copy src (a tensor of the same size, any dtype, or host data) into dst. */
export function assign(dst: Tensor, src: Tensor | HostArray): Tensor {
  return dst.assign(src);
}

/**
 * The model-dtype copy the step refreshes with p (castCopy's cache entry), when only the cache
 * holds it; a copy also held elsewhere (a pending backward saved it) is dropped from the cache
 * instead, so it keeps its values and the next castCopy makes a new one.
 */
function stepCopy(p: Tensor): AdamWTensor<Storage>['copy'] {
  const casts = p._live().casts;
  if (!casts) return null;
  let found: AdamWTensor<Storage>['copy'] = null;
  for (const [dtype, c] of casts) {
    if (found === null && isFloatDType(dtype) && c.copy._live().refs === 1) found = { to: c.copy.storage, dtype: c.copy.floatDtype };
    else {
      c.copy.dispose();
      casts.delete(dtype);
    }
  }
  return found;
}

function checkSame(op: string, a: Tensor, b: Tensor, nameA: string, nameB: string): void {
  if (!sameShape(a.shape, b.shape) || a.device !== b.device) {
    throw new XtunerError(`${op}: ${nameB} ${fmt(b.shape)} on ${b.device} must match ${nameA} ${fmt(a.shape)} on ${a.device}`);
  }
}

/** One tensor of an AdamW step: the moments have the parameter's shape; `step` counts from 1, this one included. */
export interface AdamWEntry {
  param: Tensor;
  grad: Tensor;
  expAvg: Tensor;
  expAvgSq: Tensor;
  step: number;
}

/**
 * One AdamW step of every entry in place (see queueAdamwStep): the step state written into `state`
 * (an int32 [ADAMW_STATE_WORDS] tensor the caller keeps, or a temporary one), then the update queued.
 */
export function adamwStep(entries: readonly AdamWEntry[], hyper: AdamWHyper, gradScale: Tensor | null = null, state: Tensor | null = null): void {
  if (entries.length === 0) return;
  const st = state ?? empty([ADAMW_STATE_WORDS], 'int32', entries[0]!.param.device);
  writeAdamwState(st, hyper, entries);
  queueAdamwStep(entries, st, gradScale);
  if (st !== state) st.dispose();
}

/** The step being taken: the furthest entry's (the others lag behind it). */
function furthestStep(entries: readonly AdamWEntry[]): number {
  return Math.max(...entries.map((e) => e.step));
}

/**
 * Writes the step state AdamW's kernel reads (lr, betas, eps, weight decay and the step being
 * taken: the furthest of `entries`') into `state`, an int32 [ADAMW_STATE_WORDS] tensor the caller
 * keeps (so its address stays the same from step to step): one upload, before queueAdamwStep
 * queues the update of the same entries.
 */
export function writeAdamwState(state: Tensor, hyper: AdamWHyper, entries: readonly AdamWEntry[]): void {
  const step = furthestStep(entries);
  if (state.dtype !== 'int32' || state.size !== ADAMW_STATE_WORDS) {
    throw new XtunerError(`writeAdamwState: state must be an int32 [${ADAMW_STATE_WORDS}] tensor, got ${state.dtype} ${fmt(state.shape)}`);
  }
  state.assign(adamwStateWords({ ...hyper, step }));
}

/**
 * Queues one AdamW step of every entry in place, torch.optim.AdamW semantics: param *= 1 - lr*weightDecay;
 * moments updated from grad; param -= lr/(1-beta1^step) * expAvg / (sqrt(expAvgSq)/sqrt(1-beta2^step)
 * + eps). One backend call for all (one kernel launch on CUDA). `gradScale`, a float32 single-element
 * tensor on the same device (gradNormClip's coef), multiplies every gradient there, so clipping
 * needs neither a read-back nor a pass over the gradients of its own. The kernel reads lr, the
 * betas and the step from `state` (writeAdamwState, for the furthest entry's step); nothing here
 * copies from the host, so a CUDA graph can hold it.
 */
export function queueAdamwStep(entries: readonly AdamWEntry[], state: Tensor, gradScale: Tensor | null = null): void {
  if (entries.length === 0) return;
  for (const e of entries) {
    checkSame('adamwStep', e.param, e.grad, 'param', 'grad');
    checkSame('adamwStep', e.param, e.expAvg, 'param', 'expAvg');
    checkSame('adamwStep', e.param, e.expAvgSq, 'param', 'expAvgSq');
    if (!(e.step >= 1)) throw new XtunerError(`adamwStep: step counts from 1, got ${e.step}`);
  }
  checkDevice('adamwStep', gradScale, state, ...entries.map((e) => e.param));
  if (gradScale && (gradScale.dtype !== 'float32' || gradScale.size !== 1)) {
    throw new XtunerError(`adamwStep: gradScale must be a float32 single-element tensor, got ${gradScale.dtype} ${fmt(gradScale.shape)}`);
  }
  const step = furthestStep(entries);
  entries[0]!.param.backend.adamwStep(
    entries.map((e) => ({
      param: e.param.storage, grad: e.grad.storage, expAvg: e.expAvg.storage, expAvgSq: e.expAvgSq.storage, size: e.param.size,
      dtypes: { param: e.param.floatDtype, grad: e.grad.floatDtype, expAvg: e.expAvg.floatDtype, expAvgSq: e.expAvgSq.floatDtype },
      stepLag: step - e.step,
      copy: stepCopy(e.param),
    })),
    state.storage,
    gradScale?.storage ?? null,
  );
  for (const e of entries) {
    for (const t of [e.param, e.expAvg, e.expAvgSq]) markWritten(t._live());
    // the copy the kernel wrote holds the new values: still valid
    const casts = e.param._live().casts;
    if (casts) for (const c of casts.values()) c.version = e.param.version;
  }
}

/**
 * The global L2 norm of `ts` (all on `device`) and the clip coefficient min(1, maxNorm / (norm +
 * 1e-6)), as float32 [1] tensors computed on the device; nothing is read back (see
 * Backend.gradNormClip for non-finite norms).
 */
export function gradNormClip(ts: readonly Tensor[], maxNorm: number, device: Device): { norm: Tensor; coef: Tensor } {
  for (const t of ts) if (t.device !== device) throw new XtunerError(`gradNormClip: a tensor on ${t.device}, the norm asked on ${device}`);
  const norm = empty([1], 'float32', device);
  const coef = empty([1], 'float32', device);
  norm.backend.gradNormClip(ts.map((t) => ({ x: t.storage, size: t.size, dtype: t.floatDtype })), maxNorm, norm.storage, coef.storage);
  return { norm, coef };
}

/** The values of single-element tensors (one device), read back together: one wait for the lot. */
export function readScalars(ts: readonly Tensor[]): number[] {
  for (const t of ts) if (t.size !== 1) throw new XtunerError(`readScalars: ${fmt(t.shape)} is not a single element`);
  const joined = tidy(() => noGrad(() => concat(ts.map((t) => reshape(t.dtype === 'float32' ? t : cast(t, 'float32'), [1])), 0)));
  const values = joined.toFloat32Array();
  joined.dispose();
  return [...values];
}

/**
 * t *= s in place. `s` a number, or a single-element float tensor on t's device whose value the
 * kernel reads there (no host read, no wait).
 */
export function scaleInPlace(t: Tensor, s: number | Tensor): Tensor {
  if (typeof s === 'number') {
    t.backend.scale(t.storage, t.storage, t.size, s, t.floatDtype, null);
    markWritten(t._live());
    return t;
  }
  checkDevice('scaleInPlace', t, s);
  if (s.size !== 1) throw new XtunerError(`scaleInPlace: the scale must be a single element, got ${fmt(s.shape)}`);
  const by = s.dtype === 'float32' ? s : cast(s, 'float32');
  t.backend.scale(t.storage, t.storage, t.size, 1, t.floatDtype, by.storage);
  markWritten(t._live());
  if (by !== s) by.dispose();
  return t;
}

/**
 * dst += alpha * src in place (same shape). Mixed dtypes are added in float32 and rounded once into
 * dst's dtype, as PyTorch's `dst += alpha * src` (a float32 LoRA delta into a bfloat16 weight).
 */
export function addInPlace(dst: Tensor, src: Tensor, alpha = 1): Tensor {
  checkSame('addInPlace', dst, src, 'dst', 'src');
  const [acc, s] = src.dtype === dst.dtype ? [dst, src] : [castRaw(dst, 'float32'), castRaw(src, 'float32')];
  dst.backend.axpy(s.storage, acc.storage, dst.size, alpha, acc.floatDtype);
  if (acc !== dst) {
    dst.backend.cast(acc.storage, 'float32', dst.storage, dst.dtype, dst.size);
    acc.dispose();
  }
  if (s !== src) s.dispose();
  markWritten(dst._live());
  return dst;
}

/** Every element of t set to value, in place. */
export function fillInPlace(t: Tensor, value: number): Tensor {
  t.backend.fill(t.storage, t.dtype, 0, t.size, value);
  markWritten(t._live());
  return t;
}
