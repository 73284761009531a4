// Normalisation layers: RMSNorm (Llama family) and LayerNorm (CLIP). The weight names are the
// checkpoints' (`weight`, `bias`); eps comes from the config.

import { layerNorm, rmsNorm, type Tensor } from '../tensor/index.ts';
import { Module } from './module.ts';

export class RMSNorm extends Module {
  weight: Tensor; // [H]
  readonly eps: number;

  constructor(weight: Tensor, eps: number) {
    super();
    this.weight = weight;
    this.eps = eps;
  }

  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

export class LayerNorm extends Module {
  weight: Tensor; // [H]
  bias: Tensor; // [H]
  readonly eps: number;

  constructor(weight: Tensor, bias: Tensor, eps: number) {
    super();
    this.weight = weight;
    this.bias = bias;
    this.eps = eps;
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}
