// Everything a run needs, built from a resolved config: the model folder (local, HF cache or
// download), tokenizer, prompt template, training data, and the model with its training method:
// full fine-tuning (every weight trains), LoRA (adapters on the target linears, the rest frozen)
// or QLoRA (base linears stored in NF4, LoRA on top). Also what convert and chat share: the
// method of a config and the LoRA settings in PEFT's terms. Not here: the loop (trainer.ts).

import { probeBackends } from '../backends/index.ts';
import type { XtunerConfig } from '../config/index.ts';
import { loadTrainData, type TrainData } from '../data/index.ts';
import { XtunerError } from '../errors.ts';
import { resolveModelPath } from '../io/hf-hub.ts';
import { loadModel, type CausalLM } from '../models/index.ts';
import type { LoraConfig } from '../peft/config.ts';
import { injectLora, countParams, type InjectReport } from '../peft/lora.ts';
import { nf4Report, type QuantizeReport } from '../quant/nf4-linear.ts';
import { DropoutStream, Rng, type Device, type Tensor } from '../tensor/index.ts';
import { dtypeBytes } from '../tensor/dtype.ts';
import { getPromptTemplate, loadTokenizer, type PromptTemplate, type Tokenizer } from '../tokenizer/index.ts';

export type TrainMethod = 'full' | 'lora' | 'qlora';

export function methodOf(cfg: Pick<XtunerConfig, 'lora' | 'quantization'>): TrainMethod {
  if (cfg.lora === null) return 'full';
  return cfg.quantization === null ? 'lora' : 'qlora';
}

/** The config's LoRA settings in PEFT's terms (null target_modules: every linear but the head). */
export function peftLoraConfig(lora: NonNullable<XtunerConfig['lora']>): LoraConfig {
  return { r: lora.r, loraAlpha: lora.lora_alpha, loraDropout: lora.lora_dropout, targetModules: lora.target_modules ?? null };
}

/** 'cpu' or 'cuda'; 'auto' picks CUDA where its backend starts (driver, GPU, cuBLAS, kernels). */
export function resolveDevice(device: XtunerConfig['device']): Device {
  if (device !== 'auto') return device;
  return probeBackends().cuda.available ? 'cuda' : 'cpu';
}

export function templateOf(cfg: Pick<XtunerConfig, 'prompt_template'>): PromptTemplate | 'hf' | null {
  return cfg.prompt_template === null ? null : getPromptTemplate(cfg.prompt_template);
}

export interface ModelSetup {
  model: CausalLM;
  method: TrainMethod;
  /** [name, tensor] of the parameters that train, in model order. */
  trainable: Array<[string, Tensor]>;
  /** LoRA only: the adapters' dropout stream (its seeds follow A's init on one generator; saved for an exact resume). */
  loraDropout: DropoutStream | null;
  lora: InjectReport | null;
  quant: QuantizeReport | null;
  trainableParams: number;
  totalParams: number;
}

/**
 * The weights' dtype: the config's, else bfloat16 on CUDA for LoRA and QLoRA (frozen base weights;
 * the adapters are float32) and float32 everywhere else. Full fine-tuning trains the weights
 * themselves, and AdamW's update of a bfloat16 weight is lost under half its bf16 step (at lr 2e-5
 * most weights would never move): XTuner's full configs keep float32 weights too.
 */
export function defaultDtype(cfg: XtunerConfig, device: Device): 'float32' | 'bfloat16' {
  return cfg.dtype ?? (device === 'cuda' && cfg.lora !== null ? 'bfloat16' : 'float32');
}

/** Loads the base model and prepares it for the config's method; its weights are untouched. */
export async function setupModel(modelDir: string, cfg: XtunerConfig, seed: number, device: Device): Promise<ModelSetup> {
  const dtype = defaultDtype(cfg, device);
  // QLoRA: the base linears are quantised on the device as they load, one weight at a time, and
  // the (frozen, untied) embedding table stays in host memory: memory first, as QLoRA is for
  const quantization = cfg.quantization === null ? undefined : { doubleQuant: cfg.quantization.bnb_4bit_use_double_quant };
  const model = await loadModel(modelDir, { device, dtype, quantization });
  const method = methodOf(cfg);
  const quant: QuantizeReport | null = quantization ? nf4Report(model, dtype) : null;
  let lora: InjectReport | null = null;
  let loraDropout: DropoutStream | null = null;
  if (cfg.lora !== null) {
    const rng = new Rng(seed);
    loraDropout = new DropoutStream(rng);
    lora = injectLora(model, peftLoraConfig(cfg.lora), rng, loraDropout);
  } else {
    for (const p of model.parameters()) p.requiresGrad = true;
  }
  // LoRA dropout draws from loraDropout: the checkpointed recomputation replays it.
  model.setGradientCheckpointing(cfg.use_activation_checkpointing, loraDropout ? [loraDropout] : undefined);
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  if (trainable.length === 0) throw new XtunerError('nothing to train: the model has no trainable parameter');
  return { model, method, trainable, loraDropout, lora, quant, ...countParams(model) };
}

export interface RunSetup extends ModelSetup {
  modelDir: string;
  tokenizer: Tokenizer;
  template: PromptTemplate | 'hf' | null;
  data: TrainData;
}

/** Model folder, tokenizer, data and model for a training run. */
export async function setupRun(cfg: XtunerConfig, seed: number, device: Device, log: (line: string) => void): Promise<RunSetup> {
  const modelDir = await resolveModelPath(cfg.pretrained_model_name_or_path);
  const tokenizer = await loadTokenizer(modelDir);
  const template = templateOf(cfg);
  const data = await loadTrainData({ ...cfg, seed }, tokenizer);
  const s = data.stats;
  log(
    `data: ${s.samples} samples from ${s.records} records (${s.droppedEmpty + s.droppedNoLabel} dropped, ${s.truncated} truncated) -> ` +
      `${s.rows} ${cfg.pack_to_max_length ? `packed rows of ${cfg.max_length} tokens` : 'samples (padded per batch)'}`,
  );
  const model = await setupModel(modelDir, cfg, seed, device);
  if (cfg.lora === null && model.model.dtype !== 'float32') {
    log('note: full fine-tuning of bfloat16 weights: AdamW updates smaller than half a bfloat16 step of a weight are lost (no float32 master copy); dtype: \'float32\' keeps them');
  }
  const pct = ((100 * model.trainableParams) / model.totalParams).toFixed(2);
  log(
    `model: ${modelDir} (${model.model.modelType}, ${model.model.dtype}, ${device}); method ${model.method}: ` +
      `${model.trainableParams.toLocaleString('en-US')} of ${model.totalParams.toLocaleString('en-US')} parameters train (${pct}%)` +
      (model.quant ? `; NF4 saves ${((model.quant.bytesBefore - model.quant.bytesAfter) / 2 ** 20).toFixed(1)} MiB` : '') +
      (model.model.embeddingOnHost ? `; the embedding table (${(embeddingBytes(model.model) / 2 ** 20).toFixed(1)} MiB) stays in host memory` : ''),
  );
  return { ...model, modelDir, tokenizer, template, data };
}

/** Bytes of the model's token embedding table. */
export function embeddingBytes(model: CausalLM): number {
  const { vocabSize, hiddenSize } = model.decoderConfig;
  return vocabSize * hiddenSize * dtypeBytes(model.dtype);
}
