// Token embedding: rows of W [V, H] gathered by id. Ids given on the host (as CausalLM gives them)
// are checked against the vocabulary there and uploaded: no device round trip (see the op).

import { embedding, type EmbeddingIds, type Tensor } from '../tensor/index.ts';
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

  /** ids int32 [...] (host or tensor) -> [..., H] */
  forward(ids: EmbeddingIds): Tensor {
    return embedding(this.weight, ids);
  }
}
