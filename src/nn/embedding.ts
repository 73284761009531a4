// Token embedding: rows of W [V, H] gathered by id. Callers check ids against the vocabulary on
// the host before the ids become a tensor (CausalLM does), so no device round trip happens here.

import { embedding, type Tensor } from '../tensor/index.ts';
import { Module } from './module.ts';

export class Embedding extends Module {
  weight: Tensor; // [V, H]

  constructor(weight: Tensor) {
    super();
    this.weight = weight;
  }

  get numEmbeddings(): number {
    return this.weight.shape[0]!;
  }

  /** ids int32 [...] -> [..., H] */
  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}
