// NF4Linear: a frozen linear layer whose weight is stored in NF4 (nf4.ts), dequantised for each
// forward and multiplied in the input's dtype (QLoRA's "storage 4-bit, compute 16-bit"). It takes
// a Linear's place in a model (LinearLike) and never trains; LoRA wraps it for QLoRA.
// The quantised form lives on the layer's device as tensors (packed codes and absmax codes uint8,
// block scales float32: ~0.52 byte per weight), made there by the backend's `nf4Quantize` kernel
// (quantizeTensor: on a GPU no weight crosses to the host); `nf4Dequantize` expands it into a
// temporary weight right before the GEMM, which is freed right after; a call of a few rows
// (decoding) skips that and multiplies straight from the 4-bit weight (`nf4Matvec`: 0.5 byte
// moved per weight instead of 4.5). The backward (only dx = dy W: the weight is frozen)
// dequantises again instead of keeping W alive between passes.
// quantizeLinears() swaps the linear layers of a loaded model for NF4Linear and reports the
// memory saved; nf4LinearHook() does the same while a model loads (src/models LoadOptions
// `quantization`), one layer at a time, so the full-precision model never exists whole.

import { XtunerError } from '../errors.ts';
import { Linear, Module, type LinearLike } from '../nn/index.ts';
import { recordOp } from '../tensor/autograd.ts';
import { dtypeBytes, type DType, type FloatDType } from '../tensor/dtype.ts';
import { keep, linear, noGrad, type Device, type Tensor } from '../tensor/index.ts';
import { checkDevice, checkFloat, empty, gatheredOr, gemm2d } from '../tensor/ops/util.ts';
import { fmt } from '../tensor/shape.ts';
import { NF4_MATVEC_MAX_ROWS } from '../backends/index.ts';
import { ABSMAX_BLOCK_SIZE, dequantizeNf4, nf4BlockSize, type Nf4Data, type Nf4Options } from './nf4.ts';

/**
 * A quantised weight as device tensors (not module parameters: they never train or save as such);
 * the arrays of an Nf4Data (nf4.ts), with the double quantisation's offset as a number.
 */
export interface Nf4Tensors {
  /** Number of weights. */
  n: number;
  blockSize: number;
  packed: Tensor; // uint8 [ceil(n / 2)]
  absCodes: Tensor | null; // uint8 [nBlocks], double quantisation
  absScales: Tensor; // float32 [ceil(nBlocks / absBlockSize)], or [nBlocks] without double quantisation
  offset: number;
  absBlockSize: number;
}

/**
 * Quantises `weight` (any float dtype and shape, flattened) to NF4 on its own device with the
 * backend's nf4Quantize: the same bytes as quantizeNf4 of its values. Only the double
 * quantisation's offset is read back (4 bytes); the tensors returned are outside any tidy scope.
 */
export function quantizeTensor(weight: Tensor, options: Nf4Options = {}): Nf4Tensors {
  const dtype = checkFloat('quantizeTensor', 'weight', weight);
  const blockSize = nf4BlockSize(options);
  const n = weight.size;
  if (n === 0) throw new XtunerError('NF4: cannot quantise an empty tensor');
  const device = weight.device;
  const be = weight.backend;
  const nBlocks = Math.ceil(n / blockSize);
  const packed = keep(empty([Math.ceil(n / 2)], 'uint8', device));
  const absmax = keep(empty([nBlocks], 'float32', device));
  if (!(options.doubleQuant ?? true)) {
    be.nf4Quantize(weight.storage, packed.storage, absmax.storage, null, null, null, n, blockSize, 1, dtype);
    return { n, blockSize, packed, absCodes: null, absScales: absmax, offset: 0, absBlockSize: 1 };
  }
  const absCodes = keep(empty([nBlocks], 'uint8', device));
  const absScales = keep(empty([Math.ceil(nBlocks / ABSMAX_BLOCK_SIZE)], 'float32', device));
  const offset = keep(empty([1], 'float32', device));
  be.nf4Quantize(weight.storage, packed.storage, absmax.storage, absCodes.storage, absScales.storage, offset.storage, n, blockSize, ABSMAX_BLOCK_SIZE, dtype);
  absmax.dispose();
  const value = offset.item();
  offset.dispose();
  return { n, blockSize, packed, absCodes, absScales, offset: value, absBlockSize: ABSMAX_BLOCK_SIZE };
}

export class NF4Linear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Where the quantised weight lives and the dequantised one is computed. */
  readonly device: Device;
  readonly #n: number;
  readonly #blockSize: number;
  readonly #weight: Nf4Tensors;
  bias: Tensor | null; // [out], frozen

  /** Takes ownership of `weight`'s tensors; the bias, if any, lives on their device. */
  constructor(weight: Nf4Tensors, outFeatures: number, inFeatures: number, bias: Tensor | null = null) {
    super();
    if (weight.n !== outFeatures * inFeatures) {
      throw new XtunerError(`NF4Linear: quantised weight has ${weight.n} values, [${outFeatures}, ${inFeatures}] needs ${outFeatures * inFeatures}`);
    }
    this.#n = weight.n;
    this.#blockSize = weight.blockSize;
    this.#weight = weight;
    this.outFeatures = outFeatures;
    this.inFeatures = inFeatures;
    this.bias = bias;
    this.device = weight.packed.device;
    if (bias) bias.requiresGrad = false;
  }

  /** Quantises a Linear's weight (any float dtype) on its device; the bias stays as it is. */
  static fromLinear(layer: Linear, options: Nf4Options = {}): NF4Linear {
    const [out, inp] = layer.weight.shape as [number, number];
    return new NF4Linear(quantizeTensor(layer.weight, options), out, inp, layer.bias);
  }

  /** The quantised weight, read back to the host. */
  get quantized(): Nf4Data {
    const w = this.#weight;
    const packed = w.packed.toHostArray() as Uint8Array;
    const scales = w.absScales.toHostArray() as Float32Array;
    if (!w.absCodes) return { n: this.#n, blockSize: this.#blockSize, packed, absmax: scales, nested: null };
    const nested = { codes: w.absCodes.toHostArray() as Uint8Array, scales, offset: w.offset, blockSize: w.absBlockSize };
    return { n: this.#n, blockSize: this.#blockSize, packed, absmax: null, nested };
  }

  /** Bytes the quantised weight keeps (codes and constants; the bias is not counted). */
  get storedBytes(): number {
    const w = this.#weight;
    return w.packed.size + (w.absCodes ? w.absCodes.size + 4 * w.absScales.size + 4 : 4 * w.absScales.size);
  }

  /** The dequantised weight [out, in] as float32 values. */
  dequantizedWeight(): Float32Array {
    return dequantizeNf4(this.quantized);
  }

  /** The dequantised weight [out, in] as a new tensor of `dtype` on the layer's device. */
  dequantize(dtype: FloatDType): Tensor {
    const w = this.#weight;
    const out = empty([this.outFeatures, this.inFeatures], dtype, this.device);
    out.backend.nf4Dequantize(
      w.packed.storage, w.absCodes?.storage ?? null, w.absScales.storage, w.offset,
      out.storage, this.#n, this.#blockSize, w.absBlockSize, dtype,
    );
    return out;
  }

  forward(x: Tensor): Tensor {
    const dtype = checkFloat('NF4Linear', 'x', x);
    const rows = x.size / this.inFeatures;
    // a few rows (decoding) read the 4-bit weight only; more dequantise it for one GEMM
    const y = rows >= 1 && rows <= NF4_MATVEC_MAX_ROWS && (!this.bias || this.bias.dtype === dtype) ? this.#matvec(x, dtype) : this.#dequantizedLinear(x, dtype);
    return recordOp('nf4Linear', y, [x], [], (_saved, dy, _needs, into) => {
      // dx [rows, in] (+)= dy [rows, out] W [out, in], W dequantised again; added into x's gathered gradient where there is one
      const wb = this.dequantize(dtype);
      const dx = gatheredOr(into[0], x);
      gemm2d(false, false, rows, this.inFeatures, this.outFeatures, 1, dx === into[0] ? 1 : 0, dy, wb, dx);
      wb.dispose();
      return [dx];
    });
  }

  /** x W^T (+ bias) through a dequantised copy of W, freed right after. */
  #dequantizedLinear(x: Tensor, dtype: FloatDType): Tensor {
    const w = this.dequantize(dtype);
    const y = noGrad(() => (this.bias ? linear(x, w, this.bias) : linear(x, w)));
    w.dispose();
    return y;
  }

  /** x W^T (+ bias) straight from the 4-bit weight (nf4Matvec), for at most NF4_MATVEC_MAX_ROWS rows. */
  #matvec(x: Tensor, dtype: FloatDType): Tensor {
    checkDevice('NF4Linear', x, this.#weight.packed);
    if (x.shape[x.shape.length - 1] !== this.inFeatures) {
      throw new XtunerError(`NF4Linear: x ${fmt(x.shape)} needs a last dimension of ${this.inFeatures}`);
    }
    const w = this.#weight;
    const out = empty([...x.shape.slice(0, -1), this.outFeatures], dtype, this.device);
    const weight = { packed: w.packed.storage, absCodes: w.absCodes?.storage ?? null, absScales: w.absScales.storage, offset: w.offset, blockSize: this.#blockSize, absBlockSize: w.absBlockSize };
    x.backend.nf4Matvec(weight, x.storage, this.bias?.storage ?? null, out.storage, x.size / this.inFeatures, this.outFeatures, this.inFeatures, dtype);
    return out;
  }

  /** Frees the quantised weight's device tensors (the layer is unusable after). */
  dispose(): void {
    const w = this.#weight;
    for (const t of [w.packed, w.absCodes, w.absScales]) t?.dispose();
  }
}

export interface QuantizeReport {
  /** Module paths now NF4Linear. */
  modules: string[];
  /** Bytes of those weights before (their own dtype) and after quantisation. */
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * The output head stays in full precision, as transformers' bitsandbytes integration keeps it
 * (`lm_head`, InternLM2's `output`).
 */
export function isOutputHead(path: string): boolean {
  const last = path.slice(path.lastIndexOf('.') + 1);
  return last === 'lm_head' || last === 'output';
}

export interface QuantizeOptions extends Nf4Options {
  /** Module paths to keep in full precision; default: the output head (isOutputHead). */
  skip?: (path: string) => boolean;
}

/**
 * Replaces every Linear of `model` (except the output head, or what `skip` names) by an
 * NF4Linear quantised on its device, freeing each full-precision weight as soon as its layer is
 * done (unless another module still uses it: tied weights).
 */
export function quantizeLinears(model: Module, options: QuantizeOptions = {}): QuantizeReport {
  const skip = options.skip ?? isOutputHead;
  const targets = [...model.namedModules()].filter(([p, m]) => m instanceof Linear && p !== '' && !skip(p)) as Array<[string, Linear]>;
  const report: QuantizeReport = { modules: [], bytesBefore: 0, bytesAfter: 0 };
  for (const [path, layer] of targets) {
    const q = NF4Linear.fromLinear(layer, options);
    report.bytesBefore += layer.weight.size * dtypeBytes(layer.weight.dtype);
    report.bytesAfter += q.storedBytes;
    model.setSubmodule(path, q);
    report.modules.push(path);
    if (!new Set(model.parameters()).has(layer.weight)) layer.weight.dispose();
  }
  return report;
}

/**
 * A model loader's linear hook (src/models LoadOptions `quantization`): each Linear, as soon as
 * it is built, becomes an NF4Linear quantised on its device and its full-precision weight is
 * freed, unless `skip` names it (default: the output head). So loading holds one full-precision
 * weight at a time besides the NF4 layers already made and the layers kept as they are.
 */
export function nf4LinearHook(options: QuantizeOptions = {}): (path: string, layer: Linear) => LinearLike {
  const skip = options.skip ?? isOutputHead;
  return (path, layer) => {
    if (skip(path)) return layer;
    const q = NF4Linear.fromLinear(layer, options);
    layer.weight.dispose();
    return q;
  };
}

/** The NF4 layers of a model quantised on load: paths, and bytes before (weights of `dtypeBefore`) and after. */
export function nf4Report(model: Module, dtypeBefore: DType): QuantizeReport {
  const report: QuantizeReport = { modules: [], bytesBefore: 0, bytesAfter: 0 };
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof NF4Linear)) continue;
    report.modules.push(path);
    report.bytesBefore += m.inFeatures * m.outFeatures * dtypeBytes(dtypeBefore);
    report.bytesAfter += m.storedBytes;
  }
  return report;
}
