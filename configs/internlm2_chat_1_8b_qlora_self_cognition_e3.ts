// internlm2_chat_1_8b_qlora_self_cognition_e3: the tutorial's personal assistant: QLoRA of InternLM2-Chat-1.8B on self-cognition data.
// Values of the InternLM tutorial "XTuner 微调个人小助手认知" (InternLM/Tutorial xtuner/personal_assistant_document.md),
// which edits internlm2_1_8b_qlora_alpaca_e3: local data in OpenAI format, max_length 1024, checkpoints and
// evaluation every 300 steps, 3 kept. Here with the chat model's own prompt template, 3 epochs (the tutorial
// trains 2), and no system prompt, as the data has none. Make the data with `xtuner make-assistant-data`.
// Copy it with `xtuner copy-cfg internlm2_chat_1_8b_qlora_self_cognition_e3 .`, edit the copy, then `xtuner train <copy>`.

import type { XtunerConfigInput } from '../src/config/index.ts';

export default {
  // Model
  pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b', // the tutorial copies it to a local folder: put that path here

  // Data
  data_path: 'data/personal_assistant.jsonl', // written by `xtuner make-assistant-data --name NAME`
  dataset_format: 'openai',
  prompt_template: 'internlm2_chat',
  max_length: 1024,
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
  save_steps: 300,
  save_total_limit: 3, // checkpoints to keep (-1: all)

  // Evaluate the generation during training
  evaluation_freq: 300,
  SYSTEM: '', // the data has no system turn
  evaluation_inputs: ['请你介绍一下你自己', '你是谁', '你是我的小助手吗'],

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
