// Global engine state: reference-counted storage, scopes (tidy/keep), grad mode and memory stats.
// A storage block is shared by the tensors that view it (reshape, detach, the handles autograd
// saves for the backward) and is freed when the last of them is disposed.

import { getBackend, type Backend, type Device, type Storage } from '../backends/index.ts';
import { dtypeBytes, type DType } from './dtype.ts';
import type { Tensor } from './tensor.ts';

export interface StorageRef {
  readonly storage: Storage;
  readonly backend: Backend<Storage>;
  readonly bytes: number;
  refs: number;
  /**
   * Counts in-place writes to the storage through any handle (Tensor.assign, the helpers of
   * inplace.ts, the optimizer step: see markWritten); values derived from it and cached compare it.
   */
  version: number;
  /** Cast copies by dtype (castCopy of ops/cast.ts), each valid at the version it was made at; freed with the storage. */
  casts: Map<DType, CastCopy> | null;
  /** Set for a view (viewStorage): the storage it lies in, kept alive by it and freed with the last handle on either. */
  readonly parent?: StorageRef;
}

/** A cached cast of a storage: `copy` holds the values of the storage at `version`, in copy.dtype. */
export interface CastCopy {
  version: number;
  copy: Tensor;
}

/** Anything the scope machinery tracks and can dispose (the Tensor class). */
export interface Disposable {
  dispose(): void;
  _scope: Set<Disposable> | null;
}

const stats = { liveTensors: 0, liveBytes: 0, peakBytes: 0 };
/** Live and peak bytes per backend (one per device). */
const deviceBytes = new Map<Backend<Storage>, { liveBytes: number; peakBytes: number }>();

function countBytes(backend: Backend<Storage>, bytes: number): void {
  stats.liveBytes += bytes;
  if (stats.liveBytes > stats.peakBytes) stats.peakBytes = stats.liveBytes;
  let d = deviceBytes.get(backend);
  if (!d) deviceBytes.set(backend, (d = { liveBytes: 0, peakBytes: 0 }));
  d.liveBytes += bytes;
  if (d.liveBytes > d.peakBytes) d.peakBytes = d.liveBytes;
}
const scopes: Set<Disposable>[] = [];
let noGradDepth = 0;

/** Zero-filled storage, or with `uninit` storage whose contents are unspecified (Backend.allocUninit). */
export function allocStorage(device: Device, dtype: DType, size: number, uninit = false): StorageRef {
  const backend = getBackend(device);
  const bytes = size * dtypeBytes(dtype);
  const ref = { storage: uninit ? backend.allocUninit(dtype, size) : backend.alloc(dtype, size), backend, bytes, refs: 1, version: 0, casts: null };
  countBytes(backend, bytes);
  return ref;
}

export function retainStorage(ref: StorageRef): void {
  ref.refs++;
}

/** Elements [offset, offset + size) of `base` as storage of their own (Backend.view): no copy, base retained. */
export function viewStorage(base: StorageRef, dtype: DType, offset: number, size: number): StorageRef {
  retainStorage(base);
  return { storage: base.backend.view(base.storage, dtype, offset, size), backend: base.backend, bytes: 0, refs: 1, version: 0, casts: null, parent: base };
}

export function releaseStorage(ref: StorageRef): void {
  if (--ref.refs === 0) {
    if (ref.parent) {
      releaseStorage(ref.parent); // a view owns no memory (its bytes count in the parent's)
      return;
    }
    ref.backend.free(ref.storage);
    countBytes(ref.backend, -ref.bytes);
    dropCasts(ref);
  }
}

/** Dispose of the storage's cached cast copies (castCopy makes them again when asked). */
export function dropCasts(ref: StorageRef): void {
  if (ref.casts) for (const c of ref.casts.values()) c.copy.dispose();
  ref.casts = null;
}

/** The storage was written in place: every cached value derived from it is stale from now on. */
export function markWritten(ref: StorageRef): void {
  ref.version++;
}

export function tensorCreated(t: Disposable, tracked: boolean): void {
  stats.liveTensors++;
  const scope = scopes[scopes.length - 1];
  if (tracked && scope) {
    scope.add(t);
    t._scope = scope;
  }
}

export function tensorDisposed(t: Disposable): void {
  stats.liveTensors--;
  untrack(t);
}

export function untrack(t: Disposable): void {
  t._scope?.delete(t);
  t._scope = null;
}

/** Move `t` into the innermost open scope (or leave it untracked when none is open). */
function adoptIntoCurrent(t: Disposable): void {
  untrack(t);
  const scope = scopes[scopes.length - 1];
  if (scope) {
    scope.add(t);
    t._scope = scope;
  }
}

export function openScope(): Set<Disposable> {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  return scope;
}

/** Close the innermost scope: dispose what it tracks except `survivors`, which move to the parent. */
export function closeScope(scope: Set<Disposable>, survivors: Iterable<Disposable>, toParent = true): void {
  if (scopes[scopes.length - 1] !== scope) throw new Error('tensor scopes closed out of order');
  scopes.pop();
  const keepSet = new Set<Disposable>();
  for (const t of survivors) {
    if (t._scope === scope) {
      keepSet.add(t);
      if (toParent) adoptIntoCurrent(t);
      else untrack(t);
    }
  }
  for (const t of [...scope]) if (!keepSet.has(t)) t.dispose();
  scope.clear();
}

export function isGradEnabled(): boolean {
  return noGradDepth === 0;
}

export function enterNoGrad(): void {
  noGradDepth++;
}

export function exitNoGrad(): void {
  noGradDepth--;
}

/** Run `fn` with grad recording on, even inside noGrad or a backward pass (recomputation). */
export function withGradEnabled<T>(fn: () => T): T {
  const saved = noGradDepth;
  noGradDepth = 0;
  try {
    return fn();
  } finally {
    noGradDepth = saved;
  }
}

/** Live tensors (on all devices), and the bytes of their storage now and at the peak: on all devices, or on `device`. */
export function memoryStats(device?: Device): { liveTensors: number; liveBytes: number; peakBytes: number } {
  if (device === undefined) return { ...stats };
  const d = deviceBytes.get(getBackend(device)) ?? { liveBytes: 0, peakBytes: 0 };
  return { liveTensors: stats.liveTensors, ...d };
}

/** Start a new peak measurement from the current live bytes (every device's). */
export function resetPeakBytes(): void {
  stats.peakBytes = stats.liveBytes;
  for (const d of deviceBytes.values()) d.peakBytes = d.liveBytes;
}
