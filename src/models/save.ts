// Saving a model as a Hugging Face folder: config.json plus safetensors (sharded with an index
// when larger than maxShardBytes), the inverse of loadModel. Parameters are written under their
// module names; a tied head is not written (transformers re-ties it on load). Each tensor is
// converted only when its turn to be written comes, so peak memory stays one tensor above the model.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.ts';
import { writeCheckpoint } from '../io/checkpoint.ts';
import { FLOAT_FILE_DTYPE, float32ToHost, type WriteTensor } from '../io/safetensors.ts';
import type { DType } from '../tensor/dtype.ts';
import type { Tensor } from '../tensor/index.ts';
import { XtunerError } from '../errors.ts';

export interface SaveOptions {
  /** Dtype of the saved weights; default the model's. */
  dtype?: 'float32' | 'bfloat16' | 'float16';
  /** Largest shard in bytes; default 5 GB (transformers' default). */
  maxShardBytes?: number;
}

export interface SavableModel {
  readonly config: Record<string, unknown>;
  readonly dtype: DType;
  namedParameters(): IterableIterator<[string, Tensor]>;
}

function fileData(t: Tensor, dtype: keyof typeof FLOAT_FILE_DTYPE): () => Float32Array | Uint16Array {
  return () => {
    if (t.dtype === dtype && dtype !== 'float32') return t.toHostArray() as Uint16Array;
    return float32ToHost(t.toFloat32Array(), FLOAT_FILE_DTYPE[dtype]);
  };
}

export function saveHf(model: SavableModel, dir: string, opts: SaveOptions = {}): void {
  const dtype = opts.dtype ?? (model.dtype as keyof typeof FLOAT_FILE_DTYPE);
  if (!Object.hasOwn(FLOAT_FILE_DTYPE, dtype)) throw new XtunerError(`saveHf: dtype ${JSON.stringify(dtype)} is not one of float32, bfloat16, float16`);
  const tensors: Array<[string, WriteTensor]> = [];
  for (const [name, t] of model.namedParameters()) {
    if (/\.(base_layer|lora_A|lora_B)\./.test(name)) {
      throw new XtunerError(`saveHf: '${name}' belongs to a LoRA layer, which a Hugging Face model folder cannot hold`, {
        hint: 'merge the adapters into the weights first (mergeLora), or save them as a PEFT adapter (saveAdapter)',
      });
    }
    tensors.push([name, { dtype: FLOAT_FILE_DTYPE[dtype], shape: t.shape, data: fileData(t, dtype) }]);
  }
  fs.mkdirSync(dir, { recursive: true });
  // an earlier model's config.json goes first, the new one is written last: a save cut short leaves no folder that loads
  fs.rmSync(path.join(dir, 'config.json'), { force: true });
  writeCheckpoint(dir, tensors, opts.maxShardBytes === undefined ? {} : { maxShardBytes: opts.maxShardBytes });
  // transformers >= 5 writes "dtype", older versions "torch_dtype"; keep whichever the config uses.
  const config: Record<string, unknown> = { ...model.config };
  if ('dtype' in config) config.dtype = dtype;
  else config.torch_dtype = dtype;
  writeJsonAtomic(path.join(dir, 'config.json'), config);
}
