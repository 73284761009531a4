// The Tensor: a shape and dtype over reference-counted device storage, plus its place in the
// autograd graph. Tensors are always contiguous (row-major); ops that change layout copy. Create
// tensors with the functions in create.ts, not with the constructor.

import type { Backend, Device, Storage } from '../backends/index.ts';
import type { CpuStorage } from '../backends/cpu/storage.ts';
import { XtunerError } from '../errors.ts';
import { decRefNode, runBackward, type GradNode } from './autograd.ts';
import { hostToF32, isFloatDType, toHostOf, type DType, type FloatDType, type HostArray } from './dtype.ts';
import { allocStorage, markWritten, releaseStorage, retainStorage, tensorCreated, tensorDisposed, untrack, viewStorage, type Disposable, type StorageRef } from './engine.ts';
import { sizeOf } from './shape.ts';

export class Tensor implements Disposable {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;
  /** Leaf parameters set this; backward() accumulates their `grad`. */
  requiresGrad = false;
  /** @internal the shared storage, null once disposed */
  _ref: StorageRef | null;
  /** @internal the op that produced this tensor while recording, null for leaves */
  _node: GradNode | null = null;
  /** @internal the scope that will dispose this tensor */
  _scope: Set<Disposable> | null = null;
  #grad: Tensor | null = null;
  readonly #size: number;

  /** @internal use tensor()/zeros()/... ; `ref` is adopted (its count already includes this tensor) */
  constructor(ref: StorageRef, shape: readonly number[], dtype: DType, device: Device, tracked = true) {
    this._ref = ref;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    this.#size = sizeOf(shape);
    tensorCreated(this, tracked);
  }

  /** @internal a fresh zero-filled tensor */
  static _alloc(shape: readonly number[], dtype: DType, device: Device, tracked = true): Tensor {
    return new Tensor(allocStorage(device, dtype, sizeOf(shape)), shape, dtype, device, tracked);
  }

  /** @internal a fresh tensor with unspecified contents, for an output a kernel writes whole */
  static _allocUninit(shape: readonly number[], dtype: DType, device: Device, tracked = true): Tensor {
    return new Tensor(allocStorage(device, dtype, sizeOf(shape), true), shape, dtype, device, tracked);
  }

  /** @internal another handle on the same storage (reshape, detach, saved-for-backward) */
  _share(shape: readonly number[] = this.shape, tracked = true): Tensor {
    const ref = this._live();
    retainStorage(ref);
    return new Tensor(ref, shape, this.dtype, this.device, tracked);
  }

  /**
   * @internal a tensor over elements [offset, offset + size(shape)) of this one's storage (no copy;
   * not recorded for autograd): one upload can fill several inputs (models/step-inputs.ts)
   */
  _view(offset: number, shape: readonly number[]): Tensor {
    const n = sizeOf(shape);
    if (!(offset >= 0 && offset + n <= this.#size)) throw new Error(`view [${offset}, ${offset + n}) outside a tensor of ${this.#size} elements`);
    return new Tensor(viewStorage(this._live(), this.dtype, offset, n), shape, this.dtype, this.device);
  }

  get size(): number {
    return this.#size;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** In-place writes to this tensor's storage so far, through any handle (PyTorch's `_version`). */
  get version(): number {
    return this._live().version;
  }

  get isDisposed(): boolean {
    return this._ref === null;
  }

  /** @internal */
  _live(): StorageRef {
    if (this._ref === null) throw new Error(`use of a disposed tensor [${this.shape.join(', ')}] ${this.dtype}`);
    return this._ref;
  }

  /** The backend storage (for kernels). */
  get storage(): Storage {
    return this._live().storage;
  }

  get backend(): Backend<Storage> {
    return this._live().backend;
  }

  /** Float dtype of this tensor, or a clear error for integer tensors. */
  get floatDtype(): FloatDType {
    if (!isFloatDType(this.dtype)) throw new XtunerError(`expected a float tensor, got ${this.dtype} [${this.shape.join(', ')}]`);
    return this.dtype as FloatDType;
  }

  get grad(): Tensor | null {
    return this.#grad;
  }

  /** Setting (null or another tensor) disposes the previous gradient; the new one is owned here. */
  set grad(g: Tensor | null) {
    if (g === this.#grad) return;
    this.#grad?.dispose();
    if (g !== null) untrack(g);
    this.#grad = g;
  }

  /** A host copy of the raw elements (16-bit floats as bits). */
  toHostArray(): HostArray {
    const ref = this._live();
    return ref.backend.read(ref.storage, this.dtype, 0, this.#size);
  }

  toFloat32Array(): Float32Array {
    return hostToF32(this.toHostArray(), this.dtype); // read() already copied
  }

  toInt32Array(): Int32Array {
    const host = this.toHostArray();
    if (host instanceof Int32Array) return host;
    if (host instanceof BigInt64Array) return Int32Array.from(host, (v) => Number(v));
    if (host instanceof Uint8Array) return Int32Array.from(host);
    return Int32Array.from(hostToF32(host, this.dtype), Math.trunc);
  }

  item(): number {
    if (this.#size !== 1) throw new XtunerError(`item() needs a single-element tensor, got shape [${this.shape.join(', ')}]`);
    return this.toFloat32Array()[0]!;
  }

  /** Reverse-mode autograd from this tensor; `grad` defaults to 1 for a single-element tensor. */
  backward(grad?: Tensor): void {
    runBackward(this, grad);
  }

  /** Same storage, no history. */
  detach(): Tensor {
    return this._share();
  }

  /** Copy `src`'s values into this tensor's storage in place (no autograd); dtypes convert on one device; a host tensor of the same dtype may fill a device one. */
  assign(src: Tensor | HostArray): this {
    const ref = this._live();
    if (src instanceof Tensor) {
      if (src.size !== this.#size) {
        throw new XtunerError(`assign: shape [${src.shape.join(', ')}] does not fit [${this.shape.join(', ')}]`);
      }
      if (src.device === 'cpu' && this.device !== 'cpu' && src.dtype === this.dtype) {
        // from the host: a CPU tensor's storage is its host array, written as it is (no copy first)
        ref.backend.write(ref.storage, this.dtype, 0, src.storage as CpuStorage);
      } else if (src.device !== this.device) {
        throw new XtunerError(`assign: source on ${src.device}, target on ${this.device} (only same-dtype host tensors cross)`);
      } else ref.backend.cast(src.storage, src.dtype, ref.storage, this.dtype, this.#size);
    } else {
      if (src.length !== this.#size) throw new XtunerError(`assign: ${src.length} values for a tensor of ${this.#size}`);
      ref.backend.write(ref.storage, this.dtype, 0, toHostOf(src, this.dtype));
    }
    markWritten(ref);
    return this;
  }

  /** Free the storage now (when no other handle shares it). Disposing twice is a no-op. */
  dispose(): void {
    if (this._ref === null) return;
    releaseStorage(this._ref);
    this._ref = null;
    tensorDisposed(this);
    if (this._node) decRefNode(this._node);
    this.#grad?.dispose();
    this.#grad = null;
  }

  toString(): string {
    return `Tensor([${this.shape.join(', ')}], ${this.dtype}, ${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
