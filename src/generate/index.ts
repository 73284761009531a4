// Public surface of generation: decoding loop, KV cache, HF sampling.
export { generateIds, type GenerateOptions, type DecodingModel } from './decode.ts';
export { PreallocatedKvCache, type KvCacheShape } from './kv-cache.ts';
export { pickToken, applyRepetitionPenalty, applyTopK, applyTopP, argmax, softmax, type SamplingOptions } from './sampling.ts';
