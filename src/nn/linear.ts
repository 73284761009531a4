// Linear layer y = x W^T + b with W [out, in], the PyTorch/HF convention, so checkpoint weights
// load as they are. LoRA and NF4 layers implement LinearLike and take a Linear's place.

import { linear, type Tensor } from '../tensor/index.ts';
import { Module } from './module.ts';

export interface LinearLike extends Module {
  inFeatures: number;
  outFeatures: number;
  forward(x: Tensor): Tensor;
}

export class Linear extends Module implements LinearLike {
  weight: Tensor; // [out, in]
  bias: Tensor | null; // [out]

  constructor(weight: Tensor, bias: Tensor | null = null) {
    super();
    this.weight = weight;
    this.bias = bias;
  }

  get inFeatures(): number {
    return this.weight.shape[1]!;
  }

  get outFeatures(): number {
    return this.weight.shape[0]!;
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}
