// The decoder's own configuration, read from a Hugging Face `config.json`, and the helpers the
// per-architecture readers (./architectures.ts) use to read fields with clear errors.
// Not here: the weight names of each architecture (./architectures.ts), rope tables (./rope.ts).

import { XtunerError } from '../errors.ts';

export type RopeType = 'default' | 'linear' | 'llama3' | 'dynamic';
export const ROPE_TYPES: readonly RopeType[] = ['default', 'linear', 'llama3', 'dynamic'];

export interface RopeConfig {
  type: RopeType;
  theta: number;
  /** Scaling factor (linear, llama3, dynamic); 1 for default. */
  factor: number;
  /** llama3 only. */
  lowFreqFactor: number;
  highFreqFactor: number;
  /** llama3: the pre-training context; dynamic: max_position_embeddings. */
  originalMaxPositions: number;
}

/** Everything the decoder needs, architecture-independent (the weight names live in the layout). */
export interface DecoderConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  rope: RopeConfig;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  /** Attention window (Mistral v0.1); null = full causal attention. */
  slidingWindow: number | null;
}

/** A config.json object and the name to use in error messages. */
export class ConfigFields {
  constructor(
    readonly json: Record<string, unknown>,
    readonly source: string,
  ) {}

  private bad(key: string, want: string): never {
    throw new XtunerError(`${this.source}: "${key}" is ${JSON.stringify(this.json[key])}, expected ${want}`);
  }

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  int(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (v === undefined) throw new XtunerError(`${this.source}: missing "${key}" (a positive integer)`);
    if (!Number.isSafeInteger(v) || (v as number) <= 0) this.bad(key, 'a positive integer');
    return v as number;
  }

  num(key: string, fallback?: number): number {
    const v = this.json[key] ?? fallback;
    if (v === undefined) throw new XtunerError(`${this.source}: missing "${key}" (a number)`);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.bad(key, 'a finite number');
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.json[key] ?? fallback;
    if (typeof v !== 'boolean') this.bad(key, 'true or false');
    return v;
  }

  /** An integer or null (e.g. sliding_window). */
  optInt(key: string): number | null {
    return this.has(key) ? this.int(key) : null;
  }

  /** Checks the activation is SiLU, the only one the Llama family uses. */
  requireSilu(key: string): void {
    const v = this.json[key] ?? 'silu';
    if (v !== 'silu') this.bad(key, '"silu" (the Llama family MLP)');
  }
}

/**
 * Reads rope settings in either spelling: transformers >= 5 `rope_parameters: { rope_type, rope_theta, ... }`,
 * or the older top-level `rope_theta` + `rope_scaling: { type | rope_type, factor, ... }`. Where both
 * are there, rope_scaling wins (as transformers 5 reads them: `rope_scaling or rope_parameters`), so
 * a rope_scaling added to a config saved by transformers 5 takes effect. maxPositionEmbeddings: the
 * config's, with its architecture's default (LlamaConfig's 2048 unless given).
 */
export function readRope(f: ConfigFields, defaultTheta: number, maxPositionEmbeddings = f.int('max_position_embeddings', 2048)): RopeConfig {
  const scaling = f.json.rope_scaling;
  const useScaling = scaling != null && !(typeof scaling === 'object' && Object.keys(scaling).length === 0); // Python's `or`: {} is false
  const key = useScaling || f.json.rope_parameters == null ? 'rope_scaling' : 'rope_parameters';
  const params = (f.json[key] ?? null) as Record<string, unknown> | null;
  if (params !== null && (typeof params !== 'object' || Array.isArray(params))) {
    throw new XtunerError(`${f.source}: "${key}" must be an object or null`);
  }
  const p = new ConfigFields(params ?? {}, `${f.source} ${key}`);
  const theta = p.has('rope_theta') ? p.num('rope_theta') : f.num('rope_theta', defaultTheta);
  const type = (p.json.rope_type ?? p.json.type ?? 'default') as string;
  if (!(ROPE_TYPES as readonly string[]).includes(type)) {
    throw new XtunerError(`${f.source}: rope type "${type}" is not supported`, { hint: `supported: ${ROPE_TYPES.join(', ')}` });
  }
  if (p.has('partial_rotary_factor') && p.num('partial_rotary_factor') !== 1) {
    throw new XtunerError(`${f.source}: partial_rotary_factor other than 1 is not supported`);
  }
  const rope: RopeConfig = { type: type as RopeType, theta, factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: maxPositionEmbeddings };
  if (rope.type === 'default') return rope;
  rope.factor = p.num('factor');
  if (rope.type === 'llama3') {
    rope.lowFreqFactor = p.num('low_freq_factor');
    rope.highFreqFactor = p.num('high_freq_factor');
    // a top-level value wins over the dict's, and max_position_embeddings stands in for both (transformers' standardize_rope_params)
    rope.originalMaxPositions = f.has('original_max_position_embeddings')
      ? f.int('original_max_position_embeddings')
      : p.int('original_max_position_embeddings', maxPositionEmbeddings);
    if (!(rope.highFreqFactor > rope.lowFreqFactor)) {
      throw new XtunerError(`${f.source}: llama3 rope needs high_freq_factor > low_freq_factor`);
    }
  }
  return rope;
}

/** Head count checks shared by every architecture. */
export function checkHeads(cfg: DecoderConfig, source: string): DecoderConfig {
  if (cfg.numHeads % cfg.numKvHeads !== 0) {
    throw new XtunerError(`${source}: num_attention_heads (${cfg.numHeads}) must be a multiple of num_key_value_heads (${cfg.numKvHeads})`);
  }
  if (cfg.headDim % 2 !== 0) throw new XtunerError(`${source}: head_dim (${cfg.headDim}) must be even for rotary embeddings`);
  return cfg;
}
