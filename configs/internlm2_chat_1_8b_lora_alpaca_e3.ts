// internlm2_chat_1_8b_lora_alpaca_e3: LoRA (16-bit base) of InternLM2-Chat-1.8B on Alpaca, 3 epochs.
// XTuner ships no config of this name: these are the values of its internlm2_chat_1_8b_qlora_alpaca_e3.py
// without the 4-bit quantisation (XTuner's LoRA configs differ from its QLoRA ones only there).
// Copy it with `xtuner copy-cfg internlm2_chat_1_8b_lora_alpaca_e3 .`, edit the copy, then `xtuner train <copy>`.

import type { XtunerConfigInput } from '../src/config/index.ts';

export default {
  // Model
  pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b',

  // Data
  data_path: 'tatsu-lab/alpaca',
  dataset_format: 'alpaca',
  prompt_template: 'internlm2_chat',
  max_length: 2048,
  pack_to_max_length: true,

  // Scheduler & optimizer
  batch_size: 1, // per device
  accumulative_counts: 16, // an optimizer step every 16 iterations (batches of 1 row)
  dataloader_num_workers: 0,
  max_epochs: 3,
  optim_type: 'AdamW',
  lr: 2e-4,
  betas: [0.9, 0.999],
  weight_decay: 0,
  max_norm: 1, // gradient clipping
  warmup_ratio: 0.03,

  // Save
  save_steps: 500,
  save_total_limit: 2, // checkpoints to keep (-1: all)

  // Evaluate the generation during training
  evaluation_freq: 500,
  SYSTEM: 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n', // XTuner: SYSTEM_TEMPLATE.alpaca
  evaluation_inputs: ['请给我介绍五个上海的景点', 'Please tell me five scenic spots in Shanghai'],

  // Method (PART 2 of XTuner's config: peft's LoraConfig, transformers' BitsAndBytesConfig)
  lora: { r: 64, lora_alpha: 16, lora_dropout: 0.1, bias: 'none', task_type: 'CAUSAL_LM' },
  quantization: null,
} satisfies XtunerConfigInput;
