// NF4Linear: a frozen linear layer whose weight is stored in NF4 (nf4.ts), dequantised for each
// forward and multiplied in the input's dtype (QLoRA's "storage 4-bit, compute 16-bit"). It takes
// a Linear's place in a model (LinearLike) and never trains; LoRA wraps it for QLoRA.
// The quantised form lives on the layer's device as tensors (packed codes and absmax codes uint8,
// block scales float32: ~0.52 byte per weight); the backend's `nf4Dequantize` kernel expands it
// into a temporary weight right before the GEMM, which is freed right after. The backward (only
// dx = dy W: the weight is frozen) dequantises again instead of keeping W alive between passes.
// quantizeLinears() swaps the linear layers of a loaded model for NF4Linear and reports the
// memory saved. Not here: a fused dequantise-matmul kernel.

import { XtunerError } from '../errors.ts';
import { Linear, Module, type LinearLike } from '../nn/index.ts';
import { recordOp } from '../tensor/autograd.ts';
import { dtypeBytes, type FloatDType } from '../tensor/dtype.ts';
import { keep, linear, noGrad, tensor, type Device, type Tensor } from '../tensor/index.ts';
import { checkFloat, empty } from '../tensor/ops/util.ts';
import { dequantizeNf4, quantizeNf4, type Nf4Data, type Nf4Options } from './nf4.ts';

/** An Nf4Data's arrays as device tensors (not module parameters: they never train or save as such). */
interface DeviceNf4 {
  packed: Tensor; // uint8 [ceil(n / 2)]
  absCodes: Tensor | null; // uint8 [nBlocks], double quantisation
  absScales: Tensor; // float32 [ceil(nBlocks / 256)], or [nBlocks] without double quantisation
  offset: number;
  absBlockSize: number;
}

function upload(q: Nf4Data, device: Device): DeviceNf4 {
  const u8 = (a: Uint8Array): Tensor => keep(tensor(a, [a.length], { dtype: 'uint8', device }));
  const f32 = (a: Float32Array): Tensor => keep(tensor(a, [a.length], { dtype: 'float32', device }));
  if (q.nested) {
    const { codes, scales, offset, blockSize } = q.nested;
    return { packed: u8(q.packed), absCodes: u8(codes), absScales: f32(scales), offset, absBlockSize: blockSize };
  }
  if (!q.absmax) throw new XtunerError('NF4Linear: quantised weight has neither absmax nor nested absmax');
  return { packed: u8(q.packed), absCodes: null, absScales: f32(q.absmax), offset: 0, absBlockSize: 1 };
}

export class NF4Linear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Where the quantised weight lives and the dequantised one is computed. */
  readonly device: Device;
  readonly #n: number;
  readonly #blockSize: number;
  readonly #weight: DeviceNf4;
  bias: Tensor | null; // [out], frozen

  constructor(weight: Nf4Data, outFeatures: number, inFeatures: number, bias: Tensor | null = null, device: Device = bias?.device ?? 'cpu') {
    super();
    if (weight.n !== outFeatures * inFeatures) {
      throw new XtunerError(`NF4Linear: quantised weight has ${weight.n} values, [${outFeatures}, ${inFeatures}] needs ${outFeatures * inFeatures}`);
    }
    this.#n = weight.n;
    this.#blockSize = weight.blockSize;
    this.#weight = upload(weight, device);
    this.outFeatures = outFeatures;
    this.inFeatures = inFeatures;
    this.bias = bias;
    this.device = device;
    if (bias) bias.requiresGrad = false;
  }

  /** Quantises a Linear's weight (any float dtype); the bias stays as it is. */
  static fromLinear(layer: Linear, options: Nf4Options = {}): NF4Linear {
    const [out, inp] = layer.weight.shape as [number, number];
    return new NF4Linear(quantizeNf4(layer.weight.toFloat32Array(), options), out, inp, layer.bias, layer.weight.device);
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
    const w = this.dequantize(dtype);
    const y = noGrad(() => (this.bias ? linear(x, w, this.bias) : linear(x, w)));
    w.dispose();
    const rows = x.size / this.inFeatures;
    return recordOp('nf4Linear', y, [x], [], (_saved, dy) => {
      // dx [rows, in] = dy [rows, out] W [out, in], W dequantised again
      const wb = this.dequantize(dtype);
      const dx = empty(x.shape, dtype, x.device);
      dy.backend.gemm({
        transA: false, transB: false, m: rows, n: this.inFeatures, k: this.outFeatures, alpha: 1, beta: 0,
        a: dy.storage, aOffset: 0, lda: this.outFeatures, aDtype: dtype,
        b: wb.storage, bOffset: 0, ldb: this.inFeatures, bDtype: dtype,
        c: dx.storage, cOffset: 0, ldc: this.inFeatures, cDtype: dtype,
        batch: 1, strideA: 0, strideB: 0, strideC: 0,
      });
      wb.dispose();
      return [dx];
    });
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

/**
 * Replaces every Linear of `model` (except the output head, or what `skip` names) by an
 * NF4Linear, freeing the full-precision weights.
 */
export function quantizeLinears(model: Module, options: Nf4Options & { skip?: (path: string) => boolean } = {}): QuantizeReport {
  const skip = options.skip ?? isOutputHead;
  const targets = [...model.namedModules()].filter(([p, m]) => m instanceof Linear && p !== '' && !skip(p)) as Array<[string, Linear]>;
  const report: QuantizeReport = { modules: [], bytesBefore: 0, bytesAfter: 0 };
  for (const [path, layer] of targets) {
    const q = NF4Linear.fromLinear(layer, options);
    report.bytesBefore += layer.weight.size * dtypeBytes(layer.weight.dtype);
    report.bytesAfter += q.storedBytes;
    model.setSubmodule(path, q);
    report.modules.push(path);
  }
  // free the full-precision weights, unless a module still uses one (tied weights)
  const inUse = new Set(model.parameters());
  for (const [, layer] of targets) if (!inUse.has(layer.weight)) layer.weight.dispose();
  return report;
}
