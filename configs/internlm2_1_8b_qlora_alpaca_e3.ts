// internlm2_1_8b_qlora_alpaca_e3: QLoRA of the InternLM2-1.8B base model on Alpaca, 3 epochs.
// Values of XTuner's xtuner/configs/internlm/internlm2_1_8b/internlm2_1_8b_qlora_alpaca_e3.py.
// Copy it with `xtuner copy-cfg internlm2_1_8b_qlora_alpaca_e3 .`, edit the copy, then `xtuner train <copy>`.

import type { XtunerConfigInput } from '../src/config/index.ts';

export default {
  // Model
  pretrained_model_name_or_path: 'internlm/internlm2-1_8b',

  // Data
  data_path: 'tatsu-lab/alpaca',
  dataset_format: 'alpaca',
  prompt_template: 'default',
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
  quantization: {
    load_in_4bit: true,
    load_in_8bit: false,
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: true,
    bnb_4bit_compute_dtype: 'bfloat16', // XTuner: torch.float16 under fp16 AMP; bf16 needs no loss scaling
  },
} satisfies XtunerConfigInput;
