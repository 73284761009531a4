// Public surface of generation: decoding loop, KV cache, HF sampling.
export { generateIds, DecodingState, type GenerateOptions, type DecodingModel } from './decode.ts';
export { ChatSession, StopWordStream, XTUNER_CHAT_DEFAULTS, type ChatModel, type ChatSessionOptions, type TurnResult } from './chat-session.ts';
export { PreallocatedKvCache, type KvCacheShape } from './kv-cache.ts';
export { pickToken, pickFromRow, applyRepetitionPenalty, applyTopK, applyTopP, argmax, softmax, type LogitsRow, type SamplingOptions } from './sampling.ts';
export { TensorLogitsRow } from './logits-row.ts';
