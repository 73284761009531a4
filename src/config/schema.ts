// The one schema of a training config. Keys are XTuner's own setting names (PART 1 "Settings" of
// its configs, plus the LoRA and BitsAndBytes dicts of PART 2), so values copy straight across;
// every default is XTuner's. Types come from this schema (z.input / z.output), never written twice.
// Not here: loading files (load.ts), overrides (cfg-options.ts), messages (issues.ts).

import { z } from 'zod';
import { DATASET_FORMATS } from '../data/formats.ts';
import { PROMPT_TEMPLATE, type PromptTemplateName } from '../tokenizer/templates.ts';

/** XTuner's `evaluation_inputs` default (every alpaca config). */
export const DEFAULT_EVALUATION_INPUTS = ['请给我介绍五个上海的景点', 'Please tell me five scenic spots in Shanghai'];

const positiveInt = z.int().positive();

/** XTuner's PROMPT_TEMPLATE names, and 'hf' for the tokenizer's own chat_template. */
export const PROMPT_TEMPLATE_NAMES = [...(Object.keys(PROMPT_TEMPLATE) as PromptTemplateName[]), 'hf'] as const;

/** peft's `LoraConfig` as XTuner writes it (`dict(type=LoraConfig, r=64, ...)`). */
export const loraSchema = z.strictObject({
  /** Rank of the update matrices. */
  r: positiveInt.default(64),
  /** Scale numerator: the update is multiplied by `lora_alpha / r`. */
  lora_alpha: z.number().positive().default(16),
  /** Dropout on the LoRA input branch during training. */
  lora_dropout: z.number().min(0).lt(1).default(0.1),
  /** Module names to adapt (HF names, e.g. `q_proj`, `attention.wqkv`); default every linear but the LM head. */
  target_modules: z.array(z.string().min(1)).min(1).optional(),
  /** Only `'none'` (biases stay frozen), as in every XTuner config. */
  bias: z.literal('none').default('none'),
  /** Only `'CAUSAL_LM'`; accepted so peft dicts copy across unchanged. */
  task_type: z.literal('CAUSAL_LM').default('CAUSAL_LM'),
});

/** transformers' `BitsAndBytesConfig` as XTuner's QLoRA configs write it: NF4 with double quantisation. */
export const quantizationSchema = z.strictObject({
  /** QLoRA: the frozen base weights are stored in 4 bits. */
  load_in_4bit: z.literal(true).default(true),
  /** 8-bit loading is not supported; only `false` is accepted. */
  load_in_8bit: z.literal(false).default(false),
  /** Only NormalFloat4. */
  bnb_4bit_quant_type: z.literal('nf4').default('nf4'),
  /** Quantise the per-block scales too (saves ~0.4 bit per weight). */
  bnb_4bit_use_double_quant: z.boolean().default(true),
  /** dtype the NF4 weights are dequantised to for the matmul. */
  bnb_4bit_compute_dtype: z.enum(['bfloat16', 'float16', 'float32']).default('bfloat16'),
});

export const configSchema = z
  .strictObject({
    // --- Model ---
    /** A local model folder or a Hugging Face model id (looked up in the HF cache, else downloaded). */
    pretrained_model_name_or_path: z.string().min(1),
    /** Activation checkpointing per decoder layer (XTuner's `SupervisedFinetune(use_activation_checkpointing=True)`): less memory, one more forward per step. */
    use_activation_checkpointing: z.boolean().default(true),

    // --- Data ---
    /** JSON/JSONL data file(s) (XTuner: `alpaca_en_path` / `data_files`). */
    data_path: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], {
      error: 'expected a path or a non-empty list of paths',
    }),
    /** Layout of each record: the XTuner map function to apply. XTuner's default is its own `conversation` format. */
    dataset_format: z.enum(DATASET_FORMATS).default('conversation'),
    /** XTuner `PROMPT_TEMPLATE` name (`internlm2_chat`, `qwen_chat`, `llama3_chat`, `default`, ...), or `hf` for the tokenizer's chat_template; null: raw text (pre-training). */
    prompt_template: z.enum(PROMPT_TEMPLATE_NAMES).nullable().default(null),
    /** Tokens per sample (longer samples are cut), and the length of a packed row. */
    max_length: positiveInt.default(2048),
    /** Concatenate samples into rows of exactly `max_length` tokens (attention never crosses samples). */
    pack_to_max_length: z.boolean().default(true),
    /** Shuffle samples before packing them. */
    shuffle_before_pack: z.boolean().default(true),

    // --- Scheduler & optimizer ---
    /** Rows per step on one device. */
    batch_size: positiveInt.default(1),
    /** Gradient accumulation: an optimizer step every N iterations (batches), as XTuner. */
    accumulative_counts: positiveInt.default(16),
    /** Data-loading workers (0: in the training process). */
    dataloader_num_workers: z.int().min(0).default(0),
    /** Passes over the data. */
    max_epochs: positiveInt.default(3),
    /** Run (and the learning-rate schedule) span this many iterations (batches), whatever `max_epochs` says. */
    max_iters: positiveInt.optional(),
    /** Optimizer; only AdamW. */
    optim_type: z.literal('AdamW').default('AdamW'),
    /** Peak learning rate (after warm-up, before cosine decay). */
    lr: z.number().positive().default(2e-4),
    /** AdamW betas. */
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
    /** AdamW decoupled weight decay. */
    weight_decay: z.number().min(0).default(0),
    /** Gradient clipping: max global L2 norm. */
    max_norm: z.number().positive().default(1),
    /** Fraction of training spent in linear warm-up (from lr * 1e-5 to lr). */
    warmup_ratio: z.number().min(0).lt(1).default(0.03),
    /** Learning rate at the end of the cosine decay. */
    eta_min: z.number().min(0).default(0),

    // --- Save ---
    /** Save a checkpoint every N iterations (batches). */
    save_steps: positiveInt.default(500),
    /** Checkpoints to keep (-1: all). */
    save_total_limit: z.int().min(-1).refine((n) => n !== 0, 'expected -1 (keep all) or a positive count').default(2),

    // --- Evaluate ---
    /** Run the evaluation chat every N iterations (batches). */
    evaluation_freq: positiveInt.default(500),
    /** System prompt of the evaluation chat (XTuner: `SYSTEM_TEMPLATE.alpaca` etc.). */
    SYSTEM: z.string().default(''),
    /** Prompts answered before training, every `evaluation_freq` iterations, and at the end. */
    evaluation_inputs: z.array(z.string()).default(DEFAULT_EVALUATION_INPUTS),

    // --- Runtime ---
    /** Log every N iterations (batches) (XTuner's LoggerHook interval). */
    log_interval: positiveInt.default(10),
    /** LoRA adapter settings; null trains every weight (full fine-tuning). */
    lora: loraSchema.nullable().default(null),
    /** 4-bit base weights (QLoRA); null keeps them in `dtype`. Needs `lora`. */
    quantization: quantizationSchema.nullable().default(null),
    /** Seed of every random choice (init, dropout, shuffling). */
    seed: z.int().min(0).default(0),
    /** Where to train; `auto` takes CUDA when present. */
    device: z.enum(['cpu', 'cuda', 'auto']).default('auto'),
    /** Dtype of the weights and activations; default bfloat16 on CUDA for LoRA and QLoRA, else float32 (full fine-tuning keeps float32 weights). */
    dtype: z.enum(['float32', 'bfloat16']).optional(),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.quantization !== null && cfg.lora === null) {
      ctx.addIssue({
        code: 'custom',
        path: ['quantization'],
        params: { whole: true },
        message: 'a 4-bit base model cannot be trained in full: set `lora` too (QLoRA), or set quantization to null',
      });
    }
  });

/** A config as written in a file: every key but the model and data paths optional. */
export type XtunerConfigInput = z.input<typeof configSchema>;
/** A validated config with every default filled in. */
export type XtunerConfig = z.output<typeof configSchema>;
export type LoraSettings = z.output<typeof loraSchema>;
export type QuantizationSettings = z.output<typeof quantizationSchema>;

/** Top-level keys, for suggestions. */
export const CONFIG_KEYS: readonly string[] = Object.keys(configSchema.shape);

/**
 * XTuner setting names that are not keys here, with what to write instead. A user pasting an
 * XTuner config gets this advice rather than a bare "unknown key".
 */
export const XTUNER_KEY_ADVICE: Readonly<Record<string, string>> = {
  alpaca_en_path: 'use `data_path`',
  alpaca_zh_path: 'use `data_path`',
  data_files: 'use `data_path`',
  dataset_map_fn: 'use `dataset_format` (e.g. "alpaca", "openai")',
  warm_up_ratio: 'use `warmup_ratio`',
  use_varlen_attn: 'remove it: packed rows always attend per sample here',
  sequence_parallel_size: 'remove it: sequence parallelism is not supported',
  llm_int8_threshold: 'remove it: only 4-bit NF4 quantisation is supported',
  llm_int8_has_fp16_weight: 'remove it: only 4-bit NF4 quantisation is supported',
  randomness: 'use `seed`',
  work_dir: 'pass `--work-dir` to `xtuner train`',
};
