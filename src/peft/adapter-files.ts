// The files of a PEFT LoRA adapter folder, on the host: `adapter_config.json` plus
// `adapter_model.safetensors` whose keys are `base_model.model.<module path>.lora_A.weight` /
// `.lora_B.weight` (what PEFT's save_pretrained writes: no adapter name such as `.default`).
// Reading checks that every module has both matrices with consistent shapes and ranks. Not here:
// putting the weights into a model (adapter.ts), merging them into a checkpoint (merge.ts).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../errors.ts';
import { writeJsonAtomic } from '../io/atomic.ts';
import { SafetensorsReader, hostToFloat32, writeSafetensors, type WriteTensor } from '../io/safetensors.ts';
import { ADAPTER_CONFIG_FILE, adapterConfigJson, moduleLoraParams, readAdapterConfig, type LoraConfig } from './config.ts';

export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
const KEY_PREFIX = 'base_model.model.';
const KEY_RE = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/;

/** PEFT's key of one LoRA matrix in a saved adapter. */
export function peftKey(modulePath: string, which: 'A' | 'B'): string {
  return `${KEY_PREFIX}${modulePath}.lora_${which}.weight`;
}

/** One module's LoRA matrices: A [r, in], B [out, r], float32, and its scaling (alpha / r). */
export interface LoraPair {
  a: Float32Array;
  b: Float32Array;
  r: number;
  inFeatures: number;
  outFeatures: number;
  scaling: number;
}

export interface AdapterOnHost {
  dir: string;
  config: LoraConfig & { baseModelNameOrPath: string | null };
  /** By module path (e.g. 'model.layers.0.self_attn.q_proj'), in file order. */
  modules: Map<string, LoraPair>;
}

/** Reads and checks an adapter folder. */
export function readAdapterFolder(dir: string): AdapterOnHost {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new XtunerError(`${dir}: adapter folder not found`);
  const config = readAdapterConfig(path.join(dir, ADAPTER_CONFIG_FILE));
  const file = path.join(dir, ADAPTER_WEIGHTS_FILE);
  if (!fs.existsSync(file)) {
    const bin = fs.existsSync(path.join(dir, 'adapter_model.bin'));
    throw new XtunerError(`${file}: not found`, {
      hint: bin ? 'found adapter_model.bin: PyTorch pickles are not read; re-save the adapter with safe_serialization=True' : undefined,
    });
  }
  const reader = SafetensorsReader.open(file);
  try {
    const halves = new Map<string, { a?: { data: Float32Array; shape: readonly number[] }; b?: { data: Float32Array; shape: readonly number[] } }>();
    for (const name of reader.names()) {
      const m = KEY_RE.exec(name);
      if (!m) {
        throw new XtunerError(`${file}: unexpected tensor '${name}'`, {
          hint: `expected only LoRA matrices named ${KEY_PREFIX}<module>.lora_A.weight / .lora_B.weight`,
        });
      }
      const t = reader.read(name);
      if (t.shape.length !== 2) throw new XtunerError(`${file}: '${name}' has shape [${t.shape.join(', ')}], expected a matrix`);
      const entry = halves.get(m[1]!) ?? {};
      entry[m[2] === 'A' ? 'a' : 'b'] = { data: hostToFloat32(t), shape: t.shape };
      halves.set(m[1]!, entry);
    }
    if (halves.size === 0) throw new XtunerError(`${file}: holds no LoRA weights`);
    const modules = new Map<string, LoraPair>();
    for (const [mod, { a, b }] of halves) {
      if (!a || !b) throw new XtunerError(`${file}: module '${mod}' has lora_${a ? 'A' : 'B'} but no lora_${a ? 'B' : 'A'}`);
      const [r, inFeatures] = a.shape as [number, number];
      const [outFeatures, rb] = b.shape as [number, number];
      if (rb !== r) throw new XtunerError(`${file}: module '${mod}': lora_A is [${a.shape.join(', ')}] but lora_B is [${b.shape.join(', ')}] (ranks differ)`);
      const p = moduleLoraParams(config, mod);
      if (p.r !== r) {
        throw new XtunerError(`${file}: module '${mod}' has rank ${r} but ${ADAPTER_CONFIG_FILE} gives r = ${p.r}`);
      }
      modules.set(mod, { a: a.data, b: b.data, r, inFeatures, outFeatures, scaling: p.scaling });
    }
    return { dir, config, modules };
  } finally {
    reader.close();
  }
}

/**
 * Writes an adapter folder: the config and `adapter_model.safetensors` (float32), each file
 * atomically. `targetModules` recorded in the config must match what was wrapped.
 */
export function writeAdapterFolder(
  dir: string,
  config: LoraConfig & { targetModules: string[] | string },
  modules: Iterable<readonly [string, { a: WriteTensor; b: WriteTensor }]>,
  baseModelNameOrPath: string | null = null,
): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors: Array<readonly [string, WriteTensor]> = [];
  for (const [mod, { a, b }] of modules) tensors.push([peftKey(mod, 'A'), a], [peftKey(mod, 'B'), b]);
  if (tensors.length === 0) throw new XtunerError(`${dir}: nothing to save: the model has no LoRA layers`);
  writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
  writeJsonAtomic(path.join(dir, ADAPTER_CONFIG_FILE), adapterConfigJson(config, baseModelNameOrPath));
}

/** The error for an adapter whose modules are missing from, or shaped unlike, the model it is put on. */
export function adapterMisfitError(adapterDir: string, target: string, missing: string[], wrong: string[]): XtunerError {
  const list = (xs: string[], sep: string) => xs.slice(0, 5).join(sep) + (xs.length > 5 ? `${sep}...` : '');
  const parts = [];
  if (missing.length) parts.push(`${missing.length} module(s) missing: ${list(missing, ', ')}`);
  if (wrong.length) parts.push(`${wrong.length} with other shapes: ${list(wrong, '; ')}`);
  return new XtunerError(`adapter ${adapterDir} does not fit ${target}: ${parts.join('; ')}`, {
    hint: 'use the adapter with the model it was trained on',
  });
}
