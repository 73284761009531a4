// The one decoder of the Llama family: pre-norm blocks of GQA attention with rotary positions and
// a SwiGLU MLP, RMSNorm, an LM head (optionally tied to the embedding). Module names come from
// the architecture's layout, so parameter names are the checkpoint's; each linear layer goes through
// a LinearHook as it is built (a quantising loader keeps an NF4Linear instead). With `checkpointStreams` in the
// step context each layer runs under activation checkpointing (its activations are recomputed in
// the backward pass). Not here: loading, saving, the causal-LM loss and generation (./causal-lm.ts).

import { attention, checkpoint, isGradEnabled, reshape, rope, slice, swiglu, add, type Device, type DropoutStream, type EmbeddingIds, type Tensor } from '../tensor/index.ts';
import { Embedding, Linear, Module, RMSNorm, type LinearLike } from '../nn/index.ts';
import type { Layout } from './architectures.ts';
import type { DecoderConfig } from './config.ts';

/** Makes (or loads) the parameter named `name` with `shape`; `init` says how a fresh one starts. */
/** A parameter by name: loaded or initialised, on the model's device unless `device` says where. */
export type ParamSource = (name: string, shape: number[], init: 'normal' | 'ones' | 'zeros', device?: Device) => Tensor;

/**
 * What the model keeps for a linear layer just built from its parameters (`path`: its module
 * name): the layer itself, or a stand-in made from it (an NF4Linear when a loader quantises, see
 * src/quant nf4LinearHook). Called as each layer is built, before the next one's weights exist.
 */
export type LinearHook = (path: string, layer: Linear) => LinearLike;

/** The LinearHook that keeps every layer as built. */
export const keepLinear: LinearHook = (_path, layer) => layer;

/** Keys and values of earlier positions, per layer (see src/generate/kv-cache.ts). */
export interface KvCache {
  /** Positions cached, those of a step that has begun included. */
  readonly length: number;
  /** Positions it can hold. */
  readonly capacity: number;
  /** Forgets the positions from `length` on (a later step writes over them); length <= this.length. */
  truncate(length: number): void;
  /** A new cache of `capacity` (>= length) positions holding a copy of this one's; this one is left as it is. */
  resized(capacity: number): KvCache;
  /** A step of `t` positions begins (before its layers append): returns its first position. */
  begin(t: number): number;
  /**
   * Writes this step's k, v [B, T, nKv, D] for `layer` at the step's position; returns the whole
   * cache [B, capacity, nKv, D] and how far it is filled, int32 [1] on the device (attention's
   * kvLength): nothing here depends on the position on the host, so a captured step replays.
   */
  append(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor; length: Tensor };
  /** Frees the cached keys and values. */
  dispose(): void;
}

/** What every layer needs besides its input. */
export interface StepContext {
  cos: Tensor; // [B, T, D]
  sin: Tensor; // [B, T, D]
  cuSeqlens?: Int32Array;
  /** The same on the device, padded (padCuSeqlens), uploaded once per step for every layer's attention. */
  cuSeqlensOnDevice?: Tensor;
  cache?: KvCache;
  /**
   * Set: each layer's forward runs under checkpoint(), keeping only its output; the generators
   * listed here (every one a layer draws from, e.g. LoRA dropout's) are replayed in the recomputation.
   */
  checkpointStreams?: readonly DropoutStream[];
}

function linearOf(p: ParamSource, hook: LinearHook, name: string, out: number, inp: number, bias: boolean): LinearLike {
  return hook(name, new Linear(p(`${name}.weight`, [out, inp], 'normal'), bias ? p(`${name}.bias`, [out], 'zeros') : null));
}

export class Attention extends Module {
  readonly #cfg: DecoderConfig;
  readonly #layout: Layout;
  readonly #layer: number;

  constructor(cfg: DecoderConfig, layout: Layout, p: ParamSource, hook: LinearHook, prefix: string, layer: number) {
    super();
    this.#cfg = cfg;
    this.#layout = layout;
    this.#layer = layer;
    const { hiddenSize: h, numHeads: nH, numKvHeads: nKv, headDim: d } = cfg;
    const qkv = layout.qkv;
    if (qkv.packed) {
      this.addModule(qkv.qkv, linearOf(p, hook, `${prefix}.${qkv.qkv}`, (nH + 2 * nKv) * d, h, cfg.qkvBias));
    } else {
      this.addModule(qkv.q, linearOf(p, hook, `${prefix}.${qkv.q}`, nH * d, h, cfg.qkvBias));
      this.addModule(qkv.k, linearOf(p, hook, `${prefix}.${qkv.k}`, nKv * d, h, cfg.qkvBias));
      this.addModule(qkv.v, linearOf(p, hook, `${prefix}.${qkv.v}`, nKv * d, h, cfg.qkvBias));
    }
    this.addModule(layout.o, linearOf(p, hook, `${prefix}.${layout.o}`, h, nH * d, cfg.oBias));
  }

  /** x [B, T, H] -> [B, T, H] */
  forward(x: Tensor, ctx: StepContext): Tensor {
    const [b, t] = x.shape as [number, number, number];
    const { numHeads: nH, headDim: d } = this.#cfg;
    let { q, k, v } = this.#project(x, b, t);
    q = rope(q, ctx.cos, ctx.sin);
    k = rope(k, ctx.cos, ctx.sin);
    let kvLength: Tensor | undefined;
    if (ctx.cache) ({ k, v, length: kvLength } = ctx.cache.append(this.#layer, k, v));
    const packed = ctx.cuSeqlens ? { cuSeqlens: ctx.cuSeqlens, ...(ctx.cuSeqlensOnDevice ? { cuSeqlensOnDevice: ctx.cuSeqlensOnDevice } : {}) } : {};
    const o = attention(q, k, v, { causal: true, scale: 1 / Math.sqrt(d), ...packed, ...(kvLength ? { kvLength } : {}) });
    return this.child<LinearLike>(this.#layout.o).forward(reshape(o, [b, t, nH * d])); // [B, T, nH*D] -> [B, T, H]
  }

  #project(x: Tensor, b: number, t: number): { q: Tensor; k: Tensor; v: Tensor } {
    const { numHeads: nH, numKvHeads: nKv, headDim: d } = this.#cfg;
    const qkv = this.#layout.qkv;
    if (!qkv.packed) {
      return {
        q: reshape(this.child<LinearLike>(qkv.q).forward(x), [b, t, nH, d]),
        k: reshape(this.child<LinearLike>(qkv.k).forward(x), [b, t, nKv, d]),
        v: reshape(this.child<LinearLike>(qkv.v).forward(x), [b, t, nKv, d]),
      };
    }
    // Packed per kv group: for each kv head, its `g` q heads, then its k head, then its v head.
    const g = nH / nKv;
    const packed = reshape(this.child<LinearLike>(qkv.qkv).forward(x), [b, t, nKv, g + 2, d]); // [B, T, nKv, g+2, D]
    return {
      q: reshape(slice(packed, 3, 0, g), [b, t, nH, d]), // [B, T, nKv, g, D] -> [B, T, nH, D]
      k: reshape(slice(packed, 3, g, g + 1), [b, t, nKv, d]),
      v: reshape(slice(packed, 3, g + 1, g + 2), [b, t, nKv, d]),
    };
  }
}

export class Mlp extends Module {
  readonly #layout: Layout;

  constructor(cfg: DecoderConfig, layout: Layout, p: ParamSource, hook: LinearHook, prefix: string) {
    super();
    this.#layout = layout;
    const { hiddenSize: h, intermediateSize: i, mlpBias } = cfg;
    this.addModule(layout.gate, linearOf(p, hook, `${prefix}.${layout.gate}`, i, h, mlpBias));
    this.addModule(layout.up, linearOf(p, hook, `${prefix}.${layout.up}`, i, h, mlpBias));
    this.addModule(layout.down, linearOf(p, hook, `${prefix}.${layout.down}`, h, i, mlpBias));
  }

  forward(x: Tensor): Tensor {
    const l = this.#layout;
    const hidden = swiglu(this.child<LinearLike>(l.gate).forward(x), this.child<LinearLike>(l.up).forward(x)); // [B, T, I]
    return this.child<LinearLike>(l.down).forward(hidden);
  }
}

export class DecoderLayer extends Module {
  readonly #layout: Layout;

  constructor(cfg: DecoderConfig, layout: Layout, p: ParamSource, hook: LinearHook, prefix: string, layer: number) {
    super();
    this.#layout = layout;
    const h = cfg.hiddenSize;
    this.addModule(layout.inputNorm, new RMSNorm(p(`${prefix}.${layout.inputNorm}.weight`, [h], 'ones'), cfg.rmsNormEps));
    this.addModule(layout.attn, new Attention(cfg, layout, p, hook, `${prefix}.${layout.attn}`, layer));
    this.addModule(layout.postNorm, new RMSNorm(p(`${prefix}.${layout.postNorm}.weight`, [h], 'ones'), cfg.rmsNormEps));
    this.addModule(layout.mlp, new Mlp(cfg, layout, p, hook, `${prefix}.${layout.mlp}`));
  }

  forward(x: Tensor, ctx: StepContext): Tensor {
    const l = this.#layout;
    const h = add(x, this.child<Attention>(l.attn).forward(this.child<RMSNorm>(l.inputNorm).forward(x), ctx));
    return add(h, this.child<Mlp>(l.mlp).forward(this.child<RMSNorm>(l.postNorm).forward(h)));
  }
}

/** The inner model: embedding, layers, final norm (HF's `model.`). */
export class DecoderModel extends Module {
  readonly #layout: Layout;

  /** `embeddingDevice`: where the embedding table lives, when not on the model's device (CausalLM's embeddingOnHost). */
  constructor(cfg: DecoderConfig, layout: Layout, p: ParamSource, hook: LinearHook, prefix: string, embeddingDevice?: Device) {
    super();
    this.#layout = layout;
    this.addModule(layout.embed, new Embedding(p(`${prefix}.${layout.embed}.weight`, [cfg.vocabSize, cfg.hiddenSize], 'normal', embeddingDevice)));
    const layers: DecoderLayer[] = [];
    for (let i = 0; i < cfg.numLayers; i++) layers.push(new DecoderLayer(cfg, layout, p, hook, `${prefix}.${layout.layers}.${i}`, i));
    this.addModule(layout.layers, layers);
    this.addModule(layout.norm, new RMSNorm(p(`${prefix}.${layout.norm}.weight`, [cfg.hiddenSize], 'ones'), cfg.rmsNormEps));
  }

  // Methods, not getters: a getter on the prototype would block addModule() of a same-named child.
  embeddingModule(): Embedding {
    return this.child<Embedding>(this.#layout.embed);
  }

  layerModules(): readonly DecoderLayer[] {
    return (this as unknown as Record<string, DecoderLayer[]>)[this.#layout.layers]!;
  }

  /**
   * ids int32 [B, T] (host or tensor), or their embeddings [B, T, H] made elsewhere (HF's
   * inputs_embeds: the table in host memory) -> hidden states [B, T, H] after the final norm.
   */
  forward(input: EmbeddingIds | { embeds: Tensor }, ctx: StepContext): Tensor {
    let x = 'embeds' in input ? input.embeds._share() : this.embeddingModule().forward(input);
    // A KV cache is appended to as a side effect, and without grad there is nothing to save.
    const streams = ctx.cache || !isGradEnabled() ? undefined : ctx.checkpointStreams;
    for (const layer of this.layerModules()) {
      const y = streams ? checkpoint((h) => layer.forward(h, ctx), [x], { streams }) : layer.forward(x, ctx);
      // x is ours (the embedding's output, then a layer's), and our handle goes now: what the
      // backward needs of it its nodes hold (the checkpoint's saved input, the norm's), and that
      // goes as soon as their backward has run, not at the step's end.
      x.dispose();
      x = y;
    }
    const out = this.child<RMSNorm>(this.#layout.norm).forward(x);
    x.dispose();
    return out;
  }
}
