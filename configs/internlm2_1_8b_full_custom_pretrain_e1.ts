// internlm2_1_8b_full_custom_pretrain_e1: template for incremental pre-training on your own text (full fine-tuning, InternLM2-1.8B, 1 epoch).
// Values of XTuner's xtuner/configs/custom_dataset/pretrain/internlm/internlm2_1_8b_full_custom_pretrain_e1.py.
// Data: a JSON list (or JSONL) of {"text": "..."}; every token is trained on.
// Copy it with `xtuner copy-cfg internlm2_1_8b_full_custom_pretrain_e1 .`, edit the copy, then `xtuner train <copy>`.

import type { XtunerConfigInput } from '../src/config/index.ts';

export default {
  // Model
  pretrained_model_name_or_path: 'internlm/internlm2-1_8b',

  // Data
  data_path: '/path/to/json/file.json', // or a list of files
  dataset_format: 'pretrain',
  prompt_template: null, // raw text, no chat template
  max_length: 2048,
  pack_to_max_length: true,
  shuffle_before_pack: false,

  // Scheduler & optimizer
  batch_size: 1, // per device
  accumulative_counts: 16, // an optimizer step every 16 iterations (batches of 1 row)
  dataloader_num_workers: 0,
  max_epochs: 1,
  optim_type: 'AdamW',
  lr: 2e-5,
  betas: [0.9, 0.999],
  weight_decay: 0,
  max_norm: 1, // gradient clipping
  warmup_ratio: 0.03,

  // Save
  save_steps: 500,
  save_total_limit: 2, // checkpoints to keep (-1: all)

  // Evaluate the generation during training
  evaluation_freq: 500,
  SYSTEM: '',
  evaluation_inputs: ['上海是', 'Shanghai is'],

  // Method (PART 2 of XTuner's config: peft's LoraConfig, transformers' BitsAndBytesConfig)
  lora: null, // full fine-tuning: every weight trains
  quantization: null,
} satisfies XtunerConfigInput;
