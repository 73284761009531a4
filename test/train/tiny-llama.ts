// The fixture-sized Llama of the trainer and CLI tests: examples/tiny-assistant's config shrunk to
// one layer of width 32 (overrides of its config.json), so an iteration takes milliseconds.

export const TINY_LLAMA = {
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 16,
};
