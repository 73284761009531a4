// Public surface of generation: decoding loop, KV cache, HF sampling.
export { generateIds, type GenerateOptions, type DecodingModel } from './decode.ts';
export { ChatSession, StopWordStream, XTUNER_CHAT_DEFAULTS, type ChatModel, type ChatSessionOptions, type TurnResult } from './chat-session.ts';
export { PreallocatedKvCache, type KvCacheShape } from './kv-cache.ts';
export { pickToken, applyRepetitionPenalty, applyTopK, applyTopP, argmax, softmax, type SamplingOptions } from './sampling.ts';
