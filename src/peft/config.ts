// LoRA settings and PEFT's `adapter_config.json`: reading it (validated, with errors naming the
// field), writing it so Python PEFT loads it, and PEFT's rules for which modules a setting
// applies to (target_modules, rank_pattern / alpha_pattern). Not here: the weights (adapter.ts),
// the layer (lora.ts).

import * as fs from 'node:fs';
import { XtunerError } from '../errors.ts';

export interface LoraConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  /**
   * Modules to wrap: a list of names matched as PEFT does (the whole module path, or its tail
   * after a '.'), or one regular expression that must match the whole path. null (XTuner's
   * default) or 'all-linear' (PEFT's name for it): every linear layer except the output head.
   */
  targetModules: string[] | string | null;
  /** Scale alpha / sqrt(r) instead of alpha / r (PEFT `use_rslora`). */
  useRslora?: boolean;
  /** Per-module rank and alpha overrides, keyed by PEFT patterns. */
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
}

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';

/** Throws unless r, alpha and dropout are usable; `where` names the source (file or argument). */
export function validateLoraConfig(config: LoraConfig, where = 'lora'): void {
  const bad = (msg: string, hint?: string) => new XtunerError(`${where}: ${msg}`, hint === undefined ? {} : { hint });
  if (!Number.isInteger(config.r) || config.r <= 0) throw bad(`r (the LoRA rank) must be a positive integer, got ${config.r}`, 'typical values are 8, 16, 64');
  if (!Number.isFinite(config.loraAlpha) || config.loraAlpha < 0) throw bad(`lora_alpha must be a number >= 0, got ${config.loraAlpha}`);
  if (!(config.loraDropout >= 0 && config.loraDropout < 1)) throw bad(`lora_dropout must be in [0, 1), got ${config.loraDropout}`);
  for (const [k, v] of Object.entries(config.rankPattern ?? {})) {
    if (!Number.isInteger(v) || v <= 0) throw bad(`rank_pattern['${k}'] must be a positive integer, got ${v}`);
  }
  for (const [k, v] of Object.entries(config.alphaPattern ?? {})) {
    if (!Number.isFinite(v) || v < 0) throw bad(`alpha_pattern['${k}'] must be a number >= 0, got ${v}`);
  }
  const t = config.targetModules;
  if (Array.isArray(t) && t.length === 0) throw bad('target_modules is an empty list', 'leave it out to target every linear layer except the output head');
  if (typeof t === 'string') {
    try {
      new RegExp(t);
    } catch (e) {
      throw bad(`target_modules '${t}' is not a valid regular expression (${(e as Error).message})`);
    }
  }
}

/** PEFT `check_target_module_exists`: a list matches a path or its tail; a string is a full-match regex. */
export function isTargetModule(targets: string[] | string, modulePath: string): boolean {
  if (typeof targets === 'string') return new RegExp(`^(?:${targets})$`).test(modulePath);
  return targets.some((t) => modulePath === t || modulePath.endsWith(`.${t}`));
}

/** PEFT `get_pattern_key`: the first pattern key that is the path or a '.'-separated tail of it. */
function patternValue(patterns: Record<string, number> | undefined, modulePath: string): number | undefined {
  for (const [key, value] of Object.entries(patterns ?? {})) {
    if (modulePath === key || new RegExp(`(^|.*\\.)(?:${key})$`).test(modulePath)) return value;
  }
  return undefined;
}

/** Rank, alpha and the LoRA scaling factor of one module. */
export function moduleLoraParams(config: LoraConfig, modulePath: string): { r: number; alpha: number; scaling: number } {
  const r = patternValue(config.rankPattern, modulePath) ?? config.r;
  const alpha = patternValue(config.alphaPattern, modulePath) ?? config.loraAlpha;
  return { r, alpha, scaling: config.useRslora ? alpha / Math.sqrt(r) : alpha / r };
}

type Json = Record<string, unknown>;

/** adapter_config.json keys of PEFT's LoRA variants, each with what it is. */
const LORA_VARIANTS: readonly (readonly [string, string])[] = [
  ['alora_invocation_tokens', 'activated LoRA (aLoRA)'],
  ['use_qalora', 'QA-LoRA'],
  ['layer_replication', 'layer-replicating'],
  ['lora_bias', 'LoRA-bias'],
  ['trainable_token_indices', 'trainable-token'],
  ['arrow_config', 'Arrow-routed'],
];

/** Reads and validates `<dir>/adapter_config.json` (a PEFT LoRA adapter). */
export function readAdapterConfig(file: string): LoraConfig & { baseModelNameOrPath: string | null } {
  let json: Json;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new XtunerError(code === 'ENOENT' ? `${file}: not found` : `${file}: not valid JSON (${(e as Error).message})`, {
      hint: 'an adapter folder holds adapter_config.json and adapter_model.safetensors, as PEFT saves them',
    });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new XtunerError(`${file}: expected a JSON object`);
  const unsupported = (msg: string) => new XtunerError(`${file}: ${msg}`, { hint: 'only plain LoRA adapters are supported' });
  if (json.peft_type !== undefined && json.peft_type !== 'LORA') throw unsupported(`peft_type is ${JSON.stringify(json.peft_type)}, expected "LORA"`);
  if (json.use_dora === true) throw unsupported('use_dora is true (DoRA adapters are not supported)');
  if (json.fan_in_fan_out === true) throw unsupported('fan_in_fan_out is true (Conv1D-style weights are not supported)');
  if (json.bias !== undefined && json.bias !== 'none') throw unsupported(`bias is ${JSON.stringify(json.bias)}, only "none" is supported`);
  // LoRA variants whose forward is not W x + s B A x: loading them as plain LoRA would compute something else
  for (const [key, what] of LORA_VARIANTS) {
    const v = json[key];
    if (v !== undefined && v !== null && v !== false && !(Array.isArray(v) && v.length === 0)) throw unsupported(`${key} is set (${what} adapters are not supported)`);
  }
  if (Array.isArray(json.modules_to_save) && json.modules_to_save.length > 0) {
    throw unsupported(`modules_to_save is ${JSON.stringify(json.modules_to_save)} (full copies of modules are not supported)`);
  }
  const num = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== 'number') throw new XtunerError(`${file}: "${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const patterns = (key: string): Record<string, number> | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'number')) {
      throw new XtunerError(`${file}: "${key}" must map module patterns to numbers`);
    }
    return v as Record<string, number>;
  };
  const tm = json.target_modules;
  let targetModules: string[] | string | null;
  if (tm === undefined || tm === null) targetModules = null;
  else if (typeof tm === 'string') targetModules = tm;
  else if (Array.isArray(tm) && tm.every((x) => typeof x === 'string')) targetModules = tm as string[];
  else throw new XtunerError(`${file}: "target_modules" must be a list of names or a regular expression`);
  const config: LoraConfig = {
    r: num('r', 8),
    loraAlpha: num('lora_alpha', 8),
    loraDropout: num('lora_dropout', 0),
    targetModules,
    useRslora: json.use_rslora === true,
  };
  const rp = patterns('rank_pattern');
  const ap = patterns('alpha_pattern');
  if (rp) config.rankPattern = rp;
  if (ap) config.alphaPattern = ap;
  validateLoraConfig(config, file);
  const base = json.base_model_name_or_path;
  return { ...config, baseModelNameOrPath: typeof base === 'string' ? base : null };
}

/**
 * `adapter_config.json` as PEFT writes it, limited to fields PEFT has understood since its early
 * versions (newer PEFT fills in the rest with defaults; older PEFT rejects fields it does not know).
 */
export function adapterConfigJson(config: LoraConfig & { targetModules: string[] | string }, baseModelNameOrPath: string | null): Json {
  return {
    alpha_pattern: config.alphaPattern ?? {},
    auto_mapping: null,
    base_model_name_or_path: baseModelNameOrPath,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: config.loraAlpha,
    lora_dropout: config.loraDropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: config.r,
    rank_pattern: config.rankPattern ?? {},
    revision: null,
    target_modules: config.targetModules,
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: config.useRslora ?? false,
  };
}
