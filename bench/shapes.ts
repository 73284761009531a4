// The model shapes the GPU benchmarks run, as Hugging Face config.json fields: the peer's
// (shared/peer/peer_bench.py), 7B shapes for QLoRA's memory check (Llama-2-7B, the issue's; InternLM2-7B,
// XTuner's flagship QLoRA config, with a 92k vocabulary), and a tiny smoke-test shape.

export const SHAPES: Record<string, Record<string, unknown>> = {
  'qwen2.5-0.5b': { model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, tie_word_embeddings: true, rope_theta: 1e6, max_position_embeddings: 32768 },
  'internlm2-1.8b': { model_type: 'llama', vocab_size: 92544, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 24, num_attention_heads: 16, num_key_value_heads: 8, rope_theta: 1e6, max_position_embeddings: 32768 },
  'llama3-8b': { model_type: 'llama', vocab_size: 128256, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, rope_theta: 5e5, max_position_embeddings: 8192 },
  // a smoke-test shape (runs on the CPU too: --device cpu)
  tiny: { model_type: 'llama', vocab_size: 2000, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 },
  'llama2-7b': { model_type: 'llama', vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, rope_theta: 1e4, max_position_embeddings: 4096 },
  // InternLM2-7B's sizes in Llama's layout (its wqkv split into q, k, v: the same GEMM work)
  'internlm2-7b': { model_type: 'llama', vocab_size: 92544, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, rope_theta: 1e6, max_position_embeddings: 32768 },
};
