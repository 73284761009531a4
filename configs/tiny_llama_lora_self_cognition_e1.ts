// tiny_llama_lora_self_cognition_e1: the offline quickstart: LoRA of a tiny Llama on self-cognition data, on a laptop CPU.
// Not an XTuner config: the tutorial's personal assistant (internlm2_chat_1_8b_qlora_self_cognition_e3) scaled
// down to the 2-layer model of examples/tiny-assistant/ (random weights built from its config.json), so
// data -> train -> convert -> merge -> chat runs in minutes without a download. Run from the repository root.
// Copy it with `xtuner copy-cfg tiny_llama_lora_self_cognition_e1 .`, edit the copy, then `xtuner train <copy>`.

import type { XtunerConfigInput } from '../src/config/index.ts';

export default {
  // Model
  pretrained_model_name_or_path: 'examples/tiny-assistant',

  // Data
  data_path: 'data/personal_assistant.jsonl', // written by `xtuner make-assistant-data --name NAME`
  dataset_format: 'openai',
  prompt_template: 'internlm2_chat',
  max_length: 256,
  pack_to_max_length: true,

  // Scheduler & optimizer
  batch_size: 1, // per device
  accumulative_counts: 1, // an optimizer step every iteration (1 row per batch x 1)
  dataloader_num_workers: 0,
  max_epochs: 1,
  max_iters: 100, // iterations (batches), whatever max_epochs says: enough to learn the one answer
  optim_type: 'AdamW',
  lr: 5e-3, // high for LoRA, as a random tiny model needs
  betas: [0.9, 0.999],
  weight_decay: 0,
  max_norm: 1, // gradient clipping
  warmup_ratio: 0.05,

  // Save
  save_steps: 50, // iterations
  save_total_limit: 2, // checkpoints to keep (-1: all)

  // Evaluate the generation during training
  evaluation_freq: 50, // iterations
  SYSTEM: '', // the data has no system turn
  evaluation_inputs: ['请做一下自我介绍'],
  log_interval: 10, // iterations

  // Method (PART 2 of XTuner's config: peft's LoraConfig, transformers' BitsAndBytesConfig)
  lora: { r: 16, lora_alpha: 32, lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM' },
  quantization: null,

  // Runtime
  seed: 0,
  device: 'cpu',
  dtype: 'float32',
} satisfies XtunerConfigInput;
