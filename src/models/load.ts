// Building a CausalLM: from a Hugging Face folder (config.json + safetensors, sharded or not), or
// with random weights from a config object (demo, benchmarks, tests). Names in the checkpoint are
// the module names (Contract 2), so loading is a lookup with shape and completeness checks.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../errors.ts';
import { CheckpointReader } from '../io/checkpoint.ts';
import { hostToFloat32, ReadBuffer, type HostTensor } from '../io/safetensors.ts';
import { keep, tensor, zeros, Rng, type Device, type Tensor } from '../tensor/index.ts';
import { f32ToHalf } from '../tensor/dtype.ts';
import { architectureOf } from './architectures.ts';
import { CausalLM, type CausalLMOptions } from './causal-lm.ts';
import { ConfigFields } from './config.ts';
import { nf4LinearHook, type QuantizeOptions } from '../quant/nf4-linear.ts';
import type { ParamSource } from './decoder.ts';

export type ModelDType = 'float32' | 'bfloat16' | 'float16';

export interface LoadOptions {
  device?: Device;
  /** Dtype of the weights in memory; default float32. */
  dtype?: ModelDType;
  /**
   * Quantise the linear layers to NF4 on the device as they load (QLoRA's base model; see
   * src/quant quantizeLinears for the options): every one but the output head unless `skip` says
   * otherwise; a head tied to the embedding stays as it is. Each full-precision weight is freed
   * once its layer is quantised, so loading never holds more than one of them.
   */
  quantization?: QuantizeOptions;
  /**
   * Keep the token embedding table in host memory while the model is on CUDA (its head not tied to
   * it): a forward gathers its rows there and uploads them (HF's inputs_embeds), so the GPU holds
   * vocab x hidden fewer values (0.7-1 GiB at 7-8B). For a frozen embedding only (LoRA, QLoRA).
   * Default: when quantising (QLoRA, 4-bit chat: memory first).
   */
  embeddingOnHost?: boolean;
}

/** CausalLM's build options, per LoadOptions: what it keeps for each linear, where the embedding table lives. */
function buildOptions(opts: LoadOptions, dtype: ModelDType, device: Device): CausalLMOptions {
  return {
    dtype,
    device,
    ...(opts.quantization ? { linear: nf4LinearHook(opts.quantization) } : {}),
    ...((opts.embeddingOnHost ?? opts.quantization !== undefined) && device !== 'cpu' ? { embeddingDevice: 'cpu' as const } : {}),
  };
}

function checkOptions(opts: LoadOptions): { device: Device; dtype: ModelDType } {
  const device = opts.device ?? 'cpu';
  const dtype = opts.dtype ?? 'float32';
  if (device !== 'cpu' && device !== 'cuda') throw new XtunerError(`device ${JSON.stringify(device)} is not one of cpu, cuda`);
  // Fail before reading gigabytes: the engine says whether the device's backend exists.
  zeros([1], { device }).dispose();
  if (!['float32', 'bfloat16', 'float16'].includes(dtype)) throw new XtunerError(`dtype ${JSON.stringify(dtype)} is not one of float32, bfloat16, float16`);
  return { device, dtype };
}

function readConfigJson(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) {
    throw new XtunerError(fs.existsSync(dir) ? `${dir}: no config.json (not a Hugging Face model folder?)` : `${dir}: model folder not found`);
  }
  return readJsonObject(file);
}

/** generation_config.json of a model folder, or null where there is none (transformers then derives one from config.json). */
function readGenerationConfig(dir: string): Record<string, unknown> | null {
  const file = path.join(dir, 'generation_config.json');
  return fs.existsSync(file) ? readJsonObject(file) : null;
}

function readJsonObject(file: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new XtunerError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new XtunerError(`${file}: expected a JSON object`);
  return json as Record<string, unknown>;
}

/** A parameter tensor of `dtype` from file data, without a float32 detour when the dtypes agree. */
function toParam(host: HostTensor, dtype: ModelDType, device: Device): Tensor {
  const shape = [...host.shape];
  let t: Tensor;
  if ((dtype === 'bfloat16' && host.dtype === 'BF16') || (dtype === 'float16' && host.dtype === 'F16')) {
    t = tensor(host.data as Uint16Array, shape, { dtype, device });
  } else {
    const f32 = hostToFloat32(host);
    t = dtype === 'float32' ? tensor(f32, shape, { device }) : tensor(f32ToHalf(f32, dtype), shape, { dtype, device });
  }
  t.requiresGrad = true;
  return keep(t);
}

/** Loads a Hugging Face model folder. Every expected tensor must be present with its shape. */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<CausalLM> {
  const { device, dtype } = checkOptions(opts);
  const config = readConfigJson(dir);
  const source = path.join(dir, 'config.json');
  const arch = architectureOf(config, source);
  const cfg = arch.readConfig(new ConfigFields(config, source));
  const ckpt = CheckpointReader.open(dir);
  const buffer = new ReadBuffer(); // toParam copies each tensor into its own storage
  try {
    const used = new Set<string>();
    const p: ParamSource = (name, shape, _init, at = device) => {
      const e = ckpt.entry(name);
      if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
        throw new XtunerError(`${e.file}: tensor '${name}' has shape [${e.shape.join(', ')}], expected [${shape.join(', ')}] from config.json`);
      }
      if (!['F32', 'BF16', 'F16', 'F64'].includes(e.dtype)) throw new XtunerError(`${e.file}: tensor '${name}' is ${e.dtype}, expected a float dtype`);
      used.add(name);
      return toParam(ckpt.read(name, buffer), dtype, at);
    };
    const model = new CausalLM(config, cfg, arch, p, buildOptions(opts, dtype, device));
    model.generationConfig = readGenerationConfig(dir);
    // Tied checkpoints may still carry the head; old ones carry rotary tables. Anything else left
    // over means the config does not describe these weights (e.g. biases it does not expect).
    const ignorable = (n: string) => n.endsWith('.rotary_emb.inv_freq') || (cfg.tieWordEmbeddings && n === `${arch.layout.head}.weight`);
    const extra = ckpt.names().filter((n) => !used.has(n) && !ignorable(n));
    if (extra.length) {
      throw new XtunerError(`${dir}: ${extra.length} tensor(s) that a ${arch.modelType} model with this config.json does not have: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`);
    }
    return model.eval();
  } finally {
    ckpt.close();
  }
}

export interface CreateOptions extends LoadOptions {
  /** Seed of the random initialisation; default 0. */
  seed?: number;
  /**
   * 'normal' (default): every weight value drawn ~ N(0, initializer_range), as transformers does.
   * 'tiled': one seeded block of TILE_VALUES such values, repeated over each weight from a seeded
   * start; for benchmarks, where speed does not depend on the values: a 7B shape builds at memory
   * speed instead of 7G random draws in JavaScript.
   */
  init?: 'normal' | 'tiled';
}

/** Values in the block that 'tiled' repeats (a multiple of the NF4 and absmax block sizes). */
export const TILE_VALUES = 65536;

/** Fills `out` with `block` repeated, starting at block[start]: one copy, then doubling copies. */
function fillTiled<A extends Float32Array | Uint16Array>(out: A, block: A, start: number): A {
  const head = Math.min(out.length, block.length - start);
  out.set(block.subarray(start, start + head));
  if (head < out.length) out.set(block.subarray(0, Math.min(start, out.length - head)), head);
  for (let filled = Math.min(out.length, block.length); filled < out.length; filled *= 2) {
    out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
  }
  return out;
}

/**
 * A model with fresh weights from a config.json-style object (`model_type`, `hidden_size`, ...),
 * initialised as transformers does: linear and embedding weights ~ N(0, initializer_range),
 * biases 0, norm weights 1 (or tiled normal values: `init`).
 */
export function createModel(config: Record<string, unknown>, opts: CreateOptions = {}): CausalLM {
  const { device, dtype } = checkOptions(opts);
  const init = opts.init ?? 'normal';
  if (init !== 'normal' && init !== 'tiled') throw new XtunerError(`init ${JSON.stringify(init)} is not one of normal, tiled`);
  const source = 'model config';
  const arch = architectureOf(config, source);
  const cfg = arch.readConfig(new ConfigFields(config, source));
  const std = new ConfigFields(config, source).num('initializer_range', 0.02);
  const rng = new Rng(opts.seed ?? 0);
  const normal = (n: number): Float32Array => {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = std * rng.normal();
    return v;
  };
  // 'tiled': the block in the model's dtype, converted once (no per-value work per weight)
  const block32 = init === 'tiled' ? normal(TILE_VALUES) : null;
  const blockHalf = block32 && dtype !== 'float32' ? f32ToHalf(block32, dtype) : null;
  const p: ParamSource = (_name, shape, kind, at = device) => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (kind === 'normal' && block32) {
      const start = rng.int(TILE_VALUES);
      if (blockHalf) return toParam({ dtype: dtype === 'bfloat16' ? 'BF16' : 'F16', shape, data: fillTiled(new Uint16Array(n), blockHalf, start) }, dtype, at);
      return toParam({ dtype: 'F32', shape, data: fillTiled(new Float32Array(n), block32, start) }, dtype, at);
    }
    const v = kind === 'normal' ? normal(n) : new Float32Array(n);
    if (kind === 'ones') v.fill(1);
    return toParam({ dtype: 'F32', shape, data: v }, dtype, at);
  };
  return new CausalLM({ ...config }, cfg, arch, p, buildOptions(opts, dtype, device)).eval();
}
