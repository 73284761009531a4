// NF4Linear: a frozen linear layer whose weight is stored in NF4 (nf4.ts), dequantised for each
// forward and multiplied in the input's dtype (QLoRA's "storage 4-bit, compute 16-bit"). It takes
// a Linear's place in a model (LinearLike) and never trains; LoRA wraps it for QLoRA.
// quantizeLinears() swaps the linear layers of a loaded model for NF4Linear and reports the
// memory saved. Not here: a fused dequantise-matmul GPU kernel (on CUDA this uploads the
// dequantised weight per forward: correct, not fast).

import { XtunerError } from '../errors.ts';
import { Linear, Module, type LinearLike } from '../nn/index.ts';
import { dtypeBytes, isFloatDType } from '../tensor/dtype.ts';
import { linear, tensor, type Device, type Tensor } from '../tensor/index.ts';
import { dequantizeNf4, nf4StoredBytes, quantizeNf4, type Nf4Data, type Nf4Options } from './nf4.ts';

export class NF4Linear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Where the dequantised weight is put for compute (the quantised form stays on the host). */
  readonly device: Device;
  /** The quantised weight [out, in], on the host. */
  readonly #weight: Nf4Data;
  bias: Tensor | null; // [out], frozen

  constructor(weight: Nf4Data, outFeatures: number, inFeatures: number, bias: Tensor | null = null, device: Device = bias?.device ?? 'cpu') {
    super();
    if (weight.n !== outFeatures * inFeatures) {
      throw new XtunerError(`NF4Linear: quantised weight has ${weight.n} values, [${outFeatures}, ${inFeatures}] needs ${outFeatures * inFeatures}`);
    }
    this.#weight = weight;
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

  get quantized(): Readonly<Nf4Data> {
    return this.#weight;
  }

  /** Bytes the quantised weight keeps (codes and constants; the bias is not counted). */
  get storedBytes(): number {
    return nf4StoredBytes(this.#weight);
  }

  /** The dequantised weight [out, in] as float32 values. */
  dequantizedWeight(): Float32Array {
    return dequantizeNf4(this.#weight);
  }

  forward(x: Tensor): Tensor {
    const dtype = isFloatDType(x.dtype) ? x.dtype : 'float32';
    const w = tensor(this.dequantizedWeight(), [this.outFeatures, this.inFeatures], { dtype, device: x.device });
    return this.bias ? linear(x, w, this.bias) : linear(x, w);
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
