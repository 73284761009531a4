// The decoding loop: prefill the prompt into a KV cache, then one token per step, chosen by
// ./sampling.ts, until maxNewTokens, a stop id, or the onToken callback says stop.
// Model-agnostic: it drives anything that implements DecodingModel (CausalLM does).

import { XtunerError } from '../errors.ts';
import { Rng } from '../tensor/index.ts';
import type { KvCache } from '../models/decoder.ts';
import { pickFromRow, type LogitsRow, type SamplingOptions } from './sampling.ts';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Generation ends after any of these is produced (it is included in the result). Default: the model's eos ids. */
  stopIds?: readonly number[];
  /** Seed of the sampling draws; the same seed gives the same ids. Default: a random seed. */
  seed?: number;
  /** Called with each new id as soon as it is chosen (streaming). Return false to stop after it. */
  onToken?: (id: number, index: number) => void | boolean;
}

export interface DecodingModel {
  readonly vocabSize: number;
  /** The eos id(s) from the model's config, the default stop ids. */
  defaultStopIds(): number[];
  createKvCache(maxLen: number): KvCache;
  /** Runs `ids` (one row) at positions cache.length.. and returns the logits of the last position [V], valid until the next call. */
  nextRow(ids: Int32Array, cache: KvCache): LogitsRow;
}

function checkOptions(model: DecodingModel, prompt: readonly number[], o: GenerateOptions): void {
  const bad = (msg: string): never => {
    throw new XtunerError(`generate: ${msg}`);
  };
  if (prompt.length === 0) bad('promptIds is empty');
  prompt.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= model.vocabSize) bad(`promptIds[${i}] = ${id} is out of the vocabulary [0, ${model.vocabSize})`);
  });
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) bad(`maxNewTokens must be an integer >= 0, got ${o.maxNewTokens}`);
  if (o.temperature !== undefined && !(o.temperature >= 0)) bad(`temperature must be >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad(`topK must be an integer >= 0, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad(`topP must be in (0, 1], got ${o.topP}`);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0)) bad(`repetitionPenalty must be > 0, got ${o.repetitionPenalty}`);
}

/** Generates up to maxNewTokens ids after `promptIds` and returns the new ids only (not the prompt). */
export function generateIds(model: DecodingModel, promptIds: readonly number[], opts: GenerateOptions): number[] {
  checkOptions(model, promptIds, opts);
  const out: number[] = [];
  if (opts.maxNewTokens === 0) return out;
  const stop = new Set(opts.stopIds ?? model.defaultStopIds());
  const rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 31));
  const uniform = () => rng.uniform();
  const context = [...promptIds];
  const cache = model.createKvCache(promptIds.length + opts.maxNewTokens);
  let row: LogitsRow | null = null;
  try {
    row = model.nextRow(Int32Array.from(promptIds), cache);
    for (let i = 0; i < opts.maxNewTokens; i++) {
      const id = pickFromRow(row, context, opts, uniform);
      row.dispose();
      row = null;
      out.push(id);
      context.push(id);
      const keepGoing = opts.onToken?.(id, i) !== false;
      if (!keepGoing || stop.has(id) || i === opts.maxNewTokens - 1) break;
      row = model.nextRow(Int32Array.of(id), cache);
    }
  } finally {
    row?.dispose();
    cache.dispose();
  }
  return out;
}
