// The Llama-family architectures: for each `model_type`, a config reader and the weight layout
// (the checkpoint's own module names). One decoder (./decoder.ts) runs them all; InternLM2 differs
// only in names and in its packed `wqkv` projection, which the attention splits with a reshape.

import { XtunerError } from '../errors.ts';
import { ConfigFields, checkHeads, readRope, type DecoderConfig } from './config.ts';

/** Module names of one architecture, relative to their parent module. */
export interface Layout {
  /** The inner model (holds embed, layers, norm) and the head, at the top level. */
  model: string;
  head: string;
  embed: string;
  layers: string;
  norm: string;
  inputNorm: string;
  postNorm: string;
  attn: string;
  /** Separate q/k/v projections, or one packed projection laid out per kv group: [q x groups, k, v]. */
  qkv: { packed: false; q: string; k: string; v: string } | { packed: true; qkv: string };
  o: string;
  mlp: string;
  gate: string;
  up: string;
  down: string;
}

export interface Architecture {
  modelType: string;
  layout: Layout;
  readConfig(f: ConfigFields): DecoderConfig;
}

const HF_LAYOUT: Layout = {
  model: 'model',
  head: 'lm_head',
  embed: 'embed_tokens',
  layers: 'layers',
  norm: 'norm',
  inputNorm: 'input_layernorm',
  postNorm: 'post_attention_layernorm',
  attn: 'self_attn',
  qkv: { packed: false, q: 'q_proj', k: 'k_proj', v: 'v_proj' },
  o: 'o_proj',
  mlp: 'mlp',
  gate: 'gate_proj',
  up: 'up_proj',
  down: 'down_proj',
};

const INTERNLM2_LAYOUT: Layout = {
  model: 'model',
  head: 'output',
  embed: 'tok_embeddings',
  layers: 'layers',
  norm: 'norm',
  inputNorm: 'attention_norm',
  postNorm: 'ffn_norm',
  attn: 'attention',
  qkv: { packed: true, qkv: 'wqkv' },
  o: 'wo',
  mlp: 'feed_forward',
  gate: 'w1',
  up: 'w3',
  down: 'w2',
};

/**
 * The defaults of an architecture's config class in transformers, for keys a config.json leaves out
 * (an explicit null is not the same: num_key_value_heads null means num_attention_heads, and
 * sliding_window null means no window).
 */
interface ConfigDefaults {
  /** num_key_value_heads when absent; null: num_attention_heads. */
  numKvHeads: number | null;
  maxPositionEmbeddings: number;
}

/** Fields common to every member. */
function common(f: ConfigFields, d: ConfigDefaults, bias: { qkv: boolean; o: boolean; mlp: boolean }, slidingWindow: number | null): DecoderConfig {
  f.requireSilu(f.has('hidden_act') ? 'hidden_act' : 'hidden_activation');
  const hiddenSize = f.int('hidden_size');
  const numHeads = f.int('num_attention_heads');
  const maxPositionEmbeddings = f.int('max_position_embeddings', d.maxPositionEmbeddings);
  return checkHeads(
    {
      vocabSize: f.int('vocab_size'),
      hiddenSize,
      intermediateSize: f.int('intermediate_size'),
      numLayers: f.int('num_hidden_layers'),
      numHeads,
      numKvHeads: f.json['num_key_value_heads'] === undefined && d.numKvHeads !== null ? d.numKvHeads : f.int('num_key_value_heads', numHeads),
      headDim: f.int('head_dim', Math.floor(hiddenSize / numHeads)),
      rmsNormEps: f.num('rms_norm_eps', 1e-6),
      maxPositionEmbeddings,
      rope: readRope(f, 10000, maxPositionEmbeddings),
      qkvBias: bias.qkv,
      oBias: bias.o,
      mlpBias: bias.mlp,
      tieWordEmbeddings: f.bool('tie_word_embeddings', false),
      slidingWindow,
    },
    f.source,
  );
}

/** sliding_window where the config class defaults it to 4096: absent, 4096; null, no window. */
function slidingWindow(f: ConfigFields): number | null {
  return f.json['sliding_window'] === undefined ? 4096 : f.optInt('sliding_window');
}

const llama: Architecture = {
  modelType: 'llama',
  layout: HF_LAYOUT,
  readConfig(f) {
    const attentionBias = f.bool('attention_bias', false);
    return common(f, { numKvHeads: null, maxPositionEmbeddings: 2048 }, { qkv: attentionBias, o: attentionBias, mlp: f.bool('mlp_bias', false) }, null);
  },
};

const mistral: Architecture = {
  modelType: 'mistral',
  layout: HF_LAYOUT,
  readConfig(f) {
    return common(f, { numKvHeads: 8, maxPositionEmbeddings: 4096 * 32 }, { qkv: false, o: false, mlp: false }, slidingWindow(f));
  },
};

const qwen2: Architecture = {
  modelType: 'qwen2',
  layout: HF_LAYOUT,
  readConfig(f) {
    // transformers windows layers i >= max_window_layers (or those layer_types names): none, no window
    const types = f.json['layer_types'];
    const windowed = Array.isArray(types) ? types.includes('sliding_attention') : f.num('max_window_layers', 28) < f.int('num_hidden_layers');
    const window = f.bool('use_sliding_window', false) && windowed ? slidingWindow(f) : null;
    return common(f, { numKvHeads: 32, maxPositionEmbeddings: 32768 }, { qkv: true, o: false, mlp: false }, window);
  },
};

const internlm2: Architecture = {
  modelType: 'internlm2',
  layout: INTERNLM2_LAYOUT,
  readConfig(f) {
    // InternLM2 has no head_dim key: it is always hidden_size / num_attention_heads.
    const bias = f.bool('bias', true);
    const cfg = common(f, { numKvHeads: null, maxPositionEmbeddings: 2048 }, { qkv: bias, o: bias, mlp: false }, null);
    cfg.headDim = cfg.hiddenSize / cfg.numHeads;
    if (!Number.isInteger(cfg.headDim)) throw new XtunerError(`${f.source}: hidden_size must be a multiple of num_attention_heads`);
    return cfg;
  },
};

export const ARCHITECTURES = { llama, mistral, qwen2, internlm2 } as const satisfies Record<string, Architecture>;
export type ModelType = keyof typeof ARCHITECTURES;

/** The architecture of a config.json object, or an error listing the supported model types. */
export function architectureOf(json: Record<string, unknown>, source: string): Architecture {
  const t = json.model_type;
  if (typeof t === 'string' && Object.hasOwn(ARCHITECTURES, t)) return ARCHITECTURES[t as ModelType];
  throw new XtunerError(`${source}: model_type ${JSON.stringify(t)} is not supported`, {
    hint: `supported model types: ${Object.keys(ARCHITECTURES).join(', ')}`,
  });
}
