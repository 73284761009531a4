// Saving a model's LoRA layers as a PEFT adapter folder, and putting a PEFT adapter folder onto a
// model (wrapping the modules it names, checking they exist and have its shapes). The files
// themselves are adapter-files.ts; this file is the bridge to live modules.

import { XtunerError } from '../errors.ts';
import { Linear, Module } from '../nn/index.ts';
import { NF4Linear } from '../quant/nf4-linear.ts';
import { adapterMisfitError, readAdapterFolder, writeAdapterFolder } from './adapter-files.ts';
import { moduleLoraParams, type LoraConfig } from './config.ts';
import { countParams, LoRALinear, loraLayers } from './lora.ts';

export interface SaveAdapterOptions {
  /** The settings the layers were made with; `targetModules` as resolved by injectLora. */
  config: LoraConfig & { targetModules: string[] | string };
  /** Recorded as `base_model_name_or_path` (PEFT uses it to find the base). */
  baseModelNameOrPath?: string | null;
}

/** Writes `adapter_config.json` and `adapter_model.safetensors` (float32) for every LoRA layer. */
export function saveAdapter(model: Module, dir: string, options: SaveAdapterOptions): string[] {
  const layers = loraLayers(model);
  if (layers.length === 0) throw new XtunerError(`cannot save an adapter to ${dir}: the model has no LoRA layers`);
  const f32 = (t: LoRALinear['lora_A']['weight']) => ({ dtype: 'F32' as const, shape: t.shape, data: () => t.toFloat32Array() });
  writeAdapterFolder(
    dir,
    options.config,
    layers.map(([path, l]) => [path, { a: f32(l.lora_A.weight), b: f32(l.lora_B.weight) }] as const),
    options.baseModelNameOrPath ?? null,
  );
  return layers.map(([p]) => p);
}

export interface LoadAdapterOptions {
  /** Make the LoRA matrices trainable (resume fine-tuning); default false (inference). */
  trainable?: boolean;
}

export interface LoadedAdapter {
  config: LoraConfig;
  modules: string[];
  trainableParams: number;
  totalParams: number;
}

/**
 * Wraps the modules a PEFT adapter names with LoRALinear layers holding its weights. All other
 * parameters are frozen. Throws, before changing the model, when a module is missing, is not a
 * linear layer, already has an adapter, or has other shapes.
 */
export function loadAdapter(model: Module, dir: string, options: LoadAdapterOptions = {}): LoadedAdapter {
  const adapter = readAdapterFolder(dir);
  const missing: string[] = [];
  const wrong: string[] = [];
  const bases = new Map<string, Linear | NF4Linear>();
  for (const [path, pair] of adapter.modules) {
    let m: Module;
    try {
      m = model.getSubmodule(path);
    } catch {
      missing.push(path);
      continue;
    }
    if (!(m instanceof Linear || m instanceof NF4Linear)) {
      wrong.push(`${path}: a ${m.constructor.name}, not a linear layer${m instanceof LoRALinear ? ' (it already has an adapter)' : ''}`);
    } else if (m.outFeatures !== pair.outFeatures || m.inFeatures !== pair.inFeatures) {
      wrong.push(`${path}: model [${m.outFeatures}, ${m.inFeatures}], adapter [${pair.outFeatures}, ${pair.inFeatures}]`);
    } else bases.set(path, m);
  }
  if (missing.length || wrong.length) throw adapterMisfitError(dir, 'the model', missing, wrong);

  for (const p of model.parameters()) p.requiresGrad = false;
  for (const [path, pair] of adapter.modules) {
    const layer = LoRALinear.withWeights(bases.get(path)!, pair.a, pair.b, {
      r: pair.r,
      alpha: moduleLoraParams(adapter.config, path).alpha,
      dropout: adapter.config.loraDropout,
      useRslora: adapter.config.useRslora ?? false,
    });
    layer.lora_A.weight.requiresGrad = options.trainable ?? false;
    layer.lora_B.weight.requiresGrad = options.trainable ?? false;
    model.setSubmodule(path, layer);
  }
  return { config: adapter.config, modules: [...adapter.modules.keys()], ...countParams(model) };
}
