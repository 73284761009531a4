// The decoding loop: prefill the prompt into a KV cache, then one token per step, chosen by
// ./sampling.ts, until maxNewTokens, a stop id, or the onToken callback says stop.
// Model-agnostic: it drives anything that implements DecodingModel (CausalLM does).
// A DecodingState keeps the cache from one generation to the next (a conversation's turns, whose
// prompt is the previous prompt and answer and more): the part of the prompt the cache already
// holds is not run again, only the rest, and a CUDA decoding graph captured over the cache
// (./decode-graph.ts) serves every turn.

import { CudaOutOfMemoryError } from '../backends/cuda/index.ts';
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
  /** Keep the KV cache for the next generation, and use what it holds of this prompt. */
  state?: DecodingState;
}

/** Positions a kept cache is allocated in (and beyond what a generation needs, one more): it grows only now and then. */
const KEPT_CACHE_CHUNK = 1024;

/** A KV cache kept between generations, and the ids whose keys and values it holds. */
export class DecodingState {
  cache: KvCache | null = null;
  ids: readonly number[] = [];

  /** `chunk`: the positions its cache grows by (default 1024). */
  constructor(readonly chunk = KEPT_CACHE_CHUNK) {
    if (!(Number.isInteger(chunk) && chunk >= 1)) throw new XtunerError(`DecodingState: chunk must be an integer >= 1, got ${chunk}`);
  }

  /** Frees the cache. */
  dispose(): void {
    this.cache?.dispose();
    this.cache = null;
    this.ids = [];
  }
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
  const state = opts.state;
  const { cache, cached } = cacheFor(model, state, promptIds, promptIds.length + opts.maxNewTokens);
  let row: LogitsRow | null = null;
  try {
    row = model.nextRow(Int32Array.from(promptIds.slice(cached)), cache);
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
    // every id but the last one chosen has its keys and values in the cache
    if (state) state.ids = [...promptIds, ...out.slice(0, -1)];
  } finally {
    row?.dispose();
    if (!state) cache.dispose();
  }
  return out;
}

/**
 * The cache to generate into: without a state a fresh one of `need` positions; with one, its cache
 * truncated to the longest prefix of the prompt it holds (all of the prompt but its last id at
 * most: that id's logits are what the first step returns), moved into a larger one where it is
 * too small (made afresh, and the prompt run whole, where both do not fit in GPU memory at once).
 * `cached`: the prompt's ids already in it.
 */
function cacheFor(model: DecodingModel, state: DecodingState | undefined, promptIds: readonly number[], need: number): { cache: KvCache; cached: number } {
  if (!state) return { cache: model.createKvCache(need), cached: 0 };
  const kept = state.ids;
  state.ids = []; // until this generation ends well
  let n = 0;
  while (n < kept.length && n < promptIds.length - 1 && kept[n] === promptIds[n]) n++;
  state.cache?.truncate(n);
  if (state.cache && state.cache.capacity >= need) return { cache: state.cache, cached: n };
  const capacity = Math.ceil(need / state.chunk + 1) * state.chunk;
  if (state.cache && n > 0) {
    try {
      const grown = state.cache.resized(capacity);
      state.cache.dispose();
      state.cache = grown;
      return { cache: grown, cached: n };
    } catch (e) {
      if (!(e instanceof CudaOutOfMemoryError)) throw e;
    }
  }
  state.cache?.dispose();
  state.cache = null; // a failed allocation leaves no freed cache behind
  state.cache = model.createKvCache(capacity);
  return { cache: state.cache, cached: 0 };
}
