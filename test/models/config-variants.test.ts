// Hugging Face configs beyond the fixtures (explicit head_dim, biases, tied heads, GQA, rope scaling, InternLM2's wqkv). Every expected value is an independent float64
// restatement of transformers' formulas (transformers 5.x modeling_llama / modeling_rope_utils /
// configuration_*), computed from the model's own weights, so a mismatch is a config/formula bug.

import test from 'node:test';
import { tmpDir } from '../tmp-dir.ts';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createModel, loadModel } from '../../src/models/index.ts';
import { writeCheckpoint } from '../../src/io/checkpoint.ts';
import type { HostTensor } from '../../src/io/safetensors.ts';
import { noGrad } from '../../src/tensor/index.ts';
import type { CausalLM } from '../../src/models/causal-lm.ts';

type Cfg = Record<string, unknown>;

const BASE: Cfg = {
  vocab_size: 37,
  hidden_size: 24,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  initializer_range: 0.2,
  rms_norm_eps: 1e-5,
};

/** transformers' inv_freq in float64 for a config (default, linear, dynamic, llama3). */
function refInvFreq(cfg: Cfg, dim: number, seqLen: number): number[] {
  const rp = (cfg.rope_parameters ?? cfg.rope_scaling ?? {}) as Record<string, number | string>;
  let base = (rp.rope_theta as number | undefined) ?? (cfg.rope_theta as number | undefined) ?? 10000;
  const type = (rp.rope_type ?? rp.type ?? 'default') as string;
  const maxPos = (cfg.max_position_embeddings as number | undefined) ?? 2048;
  if (type === 'dynamic') {
    const factor = rp.factor as number;
    const s = Math.max(seqLen, maxPos);
    base = base * ((factor * s) / maxPos - (factor - 1)) ** (dim / (dim - 2));
  }
  const inv: number[] = [];
  for (let i = 0; i < dim; i += 2) inv.push(1 / base ** (i / dim));
  if (type === 'linear') return inv.map((x) => x / (rp.factor as number));
  if (type === 'llama3') {
    const factor = rp.factor as number;
    const lo = rp.low_freq_factor as number;
    const hi = rp.high_freq_factor as number;
    const ctx = rp.original_max_position_embeddings as number;
    return inv.map((f) => {
      const wl = (2 * Math.PI) / f;
      if (wl < ctx / hi) return f;
      if (wl > ctx / lo) return f / factor;
      const s = (ctx / wl - lo) / (hi - lo);
      return (1 - s) * (f / factor) + s * f;
    });
  }
  return inv;
}

/**
 * Float64 forward of a Llama-family decoder (HF LlamaForCausalLM semantics) from the model's own
 * weights: RMSNorm, GQA attention with rotate_half rope, SwiGLU MLP, optional biases, tied head.
 */
function refLogits(m: CausalLM, cfg: Cfg, ids: number[], opts: { internlm2?: boolean; layers?: number } = {}): Float64Array {
  const P = new Map([...m.namedParameters()].map(([n, t]) => [n, Float64Array.from(t.toFloat32Array())]));
  const dc = m.decoderConfig;
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKv, headDim: d, intermediateSize: I, vocabSize: V, rmsNormEps: eps } = dc;
  const T = ids.length;
  const g = nH / nKv;
  const il = opts.internlm2 === true;
  const n = (s: string) => {
    const v = P.get(s);
    assert.ok(v, `no parameter ${s}`);
    return v;
  };
  const opt = (s: string) => P.get(s) ?? null;
  const linear = (x: Float64Array, rows: number, w: Float64Array, b: Float64Array | null, out: number, inp: number) => {
    const y = new Float64Array(rows * out);
    for (let r = 0; r < rows; r++)
      for (let o = 0; o < out; o++) {
        let s = b ? b[o]! : 0;
        for (let i = 0; i < inp; i++) s += x[r * inp + i]! * w[o * inp + i]!;
        y[r * out + o] = s;
      }
    return y;
  };
  const rms = (x: Float64Array, w: Float64Array) => {
    const y = new Float64Array(x.length);
    for (let r = 0; r < T; r++) {
      let ss = 0;
      for (let i = 0; i < H; i++) ss += x[r * H + i]! ** 2;
      const inv = 1 / Math.sqrt(ss / H + eps);
      for (let i = 0; i < H; i++) y[r * H + i] = x[r * H + i]! * inv * w[i]!;
    }
    return y;
  };
  const inv = refInvFreq(cfg, d, T);
  const rope = (x: Float64Array, heads: number) => {
    const y = new Float64Array(x.length);
    for (let t = 0; t < T; t++)
      for (let h = 0; h < heads; h++) {
        const o = (t * heads + h) * d;
        for (let i = 0; i < d / 2; i++) {
          const a = t * inv[i]!;
          const c = Math.cos(a);
          const s = Math.sin(a);
          const x1 = x[o + i]!;
          const x2 = x[o + i + d / 2]!;
          y[o + i] = x1 * c - x2 * s;
          y[o + i + d / 2] = x2 * c + x1 * s;
        }
      }
    return y;
  };
  const emb = n(il ? 'model.tok_embeddings.weight' : 'model.embed_tokens.weight');
  let x = new Float64Array(T * H);
  ids.forEach((id, t) => x.set(emb.subarray(id * H, (id + 1) * H), t * H));
  const L = opts.layers ?? dc.numLayers;
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    const hn = rms(x, n(p + (il ? 'attention_norm.weight' : 'input_layernorm.weight')));
    let q: Float64Array, k: Float64Array, v: Float64Array;
    if (il) {
      const qkv = linear(hn, T, n(p + 'attention.wqkv.weight'), opt(p + 'attention.wqkv.bias'), (nH + 2 * nKv) * d, H);
      q = new Float64Array(T * nH * d);
      k = new Float64Array(T * nKv * d);
      v = new Float64Array(T * nKv * d);
      const W = (nH + 2 * nKv) * d;
      for (let t = 0; t < T; t++)
        for (let kv = 0; kv < nKv; kv++) {
          const at = (j: number) => t * W + (kv * (g + 2) + j) * d;
          for (let j = 0; j < g; j++) q.set(qkv.subarray(at(j), at(j) + d), (t * nH + kv * g + j) * d);
          k.set(qkv.subarray(at(g), at(g) + d), (t * nKv + kv) * d);
          v.set(qkv.subarray(at(g + 1), at(g + 1) + d), (t * nKv + kv) * d);
        }
    } else {
      q = linear(hn, T, n(p + 'self_attn.q_proj.weight'), opt(p + 'self_attn.q_proj.bias'), nH * d, H);
      k = linear(hn, T, n(p + 'self_attn.k_proj.weight'), opt(p + 'self_attn.k_proj.bias'), nKv * d, H);
      v = linear(hn, T, n(p + 'self_attn.v_proj.weight'), opt(p + 'self_attn.v_proj.bias'), nKv * d, H);
    }
    q = rope(q, nH);
    k = rope(k, nKv);
    const att = new Float64Array(T * nH * d);
    for (let h = 0; h < nH; h++) {
      const kh = Math.floor(h / g);
      for (let i = 0; i < T; i++) {
        const sc: number[] = [];
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += q[(i * nH + h) * d + e]! * k[(j * nKv + kh) * d + e]!;
          sc.push(s / Math.sqrt(d));
        }
        const mx = Math.max(...sc);
        const ex = sc.map((s) => Math.exp(s - mx));
        const z = ex.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= i; j++) for (let e = 0; e < d; e++) att[(i * nH + h) * d + e] += (ex[j]! / z) * v[(j * nKv + kh) * d + e]!;
      }
    }
    const o = il
      ? linear(att, T, n(p + 'attention.wo.weight'), opt(p + 'attention.wo.bias'), H, nH * d)
      : linear(att, T, n(p + 'self_attn.o_proj.weight'), opt(p + 'self_attn.o_proj.bias'), H, nH * d);
    x = x.map((val, i) => val + o[i]!);
    const hn2 = rms(x, n(p + (il ? 'ffn_norm.weight' : 'post_attention_layernorm.weight')));
    const names = il ? ['feed_forward.w1', 'feed_forward.w3', 'feed_forward.w2'] : ['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
    const gate = linear(hn2, T, n(p + names[0] + '.weight'), opt(p + names[0] + '.bias'), I, H);
    const up = linear(hn2, T, n(p + names[1] + '.weight'), opt(p + names[1] + '.bias'), I, H);
    const act = gate.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]!);
    const down = linear(act, T, n(p + names[2] + '.weight'), opt(p + names[2] + '.bias'), H, I);
    x = x.map((val, i) => val + down[i]!);
  }
  const xf = rms(x, n('model.norm.weight'));
  const head = dc.tieWordEmbeddings ? emb : n(il ? 'output.weight' : 'lm_head.weight');
  return linear(xf, T, head, null, V, H);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const IDS16 = [3, 7, 1, 30, 22, 9, 14, 5, 2, 11, 36, 8, 19, 4, 27, 6];

/** A model of `cfg` with random weights, biases and norm weights too (createModel zeroes biases), through a checkpoint folder. */
async function randomModel(cfg: Cfg): Promise<CausalLM> {
  const m = createModel(cfg, { seed: 7 });
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.4;
  const out = new Map<string, HostTensor>();
  for (const [name, t] of m.namedParameters()) {
    const data = t.toFloat32Array();
    if (name.endsWith('.bias')) for (let i = 0; i < data.length; i++) data[i] = rnd();
    if (name.endsWith('norm.weight')) for (let i = 0; i < data.length; i++) data[i] = 1 + rnd();
    out.set(name, { dtype: 'F32', shape: t.shape, data });
  }
  const dir = tmpDir('xt-config-variants-');
  try {
    writeCheckpoint(dir, out);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    return await loadModel(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function check(cfg: Cfg, ids: number[], what: string, opts: { internlm2?: boolean; against?: Cfg } = {}): Promise<void> {
  const m = await randomModel(cfg);
  const got = noGrad(() => m.forward([ids]).logits.toFloat32Array());
  const want = refLogits(m, cfg, ids, opts);
  const d = maxDiff(got, want);
  assert.ok(d <= 1e-4, `${what}: max |logits - float64 reference| = ${d}`);
  if (opts.against) {
    // the case discriminates: the reference under another config is far from these logits
    const other = refLogits(m, opts.against, ids, opts);
    assert.ok(maxDiff(got, other) > 1e-2, `${what}: the test does not discriminate (${maxDiff(got, other)})`);
  }
}

test('explicit head_dim != hidden/heads (Mistral-Nemo style), GQA, llama attention_bias + mlp_bias', async () => {
  await check({ ...BASE, model_type: 'mistral', head_dim: 8, sliding_window: null }, IDS16, 'mistral head_dim 8 (hidden 24 / 4 heads = 6)');
  await check({ ...BASE, model_type: 'llama', head_dim: 10, attention_bias: true, mlp_bias: true }, IDS16, 'llama biases, head_dim 10');
  await check({ ...BASE, model_type: 'qwen2', head_dim: 8, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 4 }, IDS16, 'qwen2 tied, no window');
});

test('rope scaling types against float64 transformers formulas', async () => {
  await check({ ...BASE, model_type: 'llama', rope_theta: 500, rope_scaling: { type: 'linear', factor: 3 } }, IDS16, 'linear', { against: { rope_theta: 500 } });
  await check({ ...BASE, model_type: 'llama', rope_parameters: { rope_type: 'linear', rope_theta: 500, factor: 3 } }, IDS16, 'linear v5 spelling');
  await check(
    {
      ...BASE,
      model_type: 'llama',
      head_dim: 16,
      max_position_embeddings: 64,
      rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    },
    IDS16,
    'llama3',
    { against: { rope_theta: 500000 } },
  );
  // dynamic NTK, sequence (16) beyond max_position_embeddings (8)
  await check({ ...BASE, model_type: 'llama', max_position_embeddings: 8, rope_scaling: { type: 'dynamic', factor: 4 } }, IDS16, 'dynamic beyond context', { against: {} });
  await check({ ...BASE, model_type: 'llama', max_position_embeddings: 64, rope_scaling: { type: 'dynamic', factor: 4 } }, IDS16, 'dynamic within context');
  // InternLM2's own spelling: rope_scaling {type: dynamic, factor}, packed wqkv with bias, GQA
  await check({ ...BASE, model_type: 'internlm2', bias: true, rope_theta: 1e6, max_position_embeddings: 8, rope_scaling: { type: 'dynamic', factor: 2 } }, IDS16, 'internlm2 dynamic', { internlm2: true, against: { rope_theta: 1e6 } });
});

/**
 * Float64 incremental decoding as transformers runs it with a KV cache: each call's rope uses
 * inv_freq for seq_len = its largest position + 1 (dynamic NTK recomputed per step beyond the
 * context); cached keys keep the rotation they were made with.
 */
function refDecoder(m: CausalLM, cfg: Cfg) {
  const P = new Map([...m.namedParameters()].map(([n, t]) => [n, Float64Array.from(t.toFloat32Array())]));
  const dc = m.decoderConfig;
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKv, headDim: d, intermediateSize: I, vocabSize: V, rmsNormEps: eps } = dc;
  const g = nH / nKv;
  const K: number[][][] = Array.from({ length: dc.numLayers }, () => []); // [layer][pos] -> nKv*d
  const Vc: number[][][] = Array.from({ length: dc.numLayers }, () => []);
  const lin = (x: number[], w: Float64Array, b: Float64Array | undefined, out: number, inp: number) =>
    Array.from({ length: out }, (_, o) => {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inp; i++) s += x[i]! * w[o * inp + i]!;
      return s;
    });
  const rms = (x: number[], w: Float64Array) => {
    const inv = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + eps);
    return x.map((v, i) => v * inv * w[i]!);
  };
  const rot = (x: number[], heads: number, pos: number, inv: number[]) => {
    const y = [...x];
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < d / 2; i++) {
        const c = Math.cos(pos * inv[i]!);
        const s = Math.sin(pos * inv[i]!);
        const x1 = x[h * d + i]!;
        const x2 = x[h * d + i + d / 2]!;
        y[h * d + i] = x1 * c - x2 * s;
        y[h * d + i + d / 2] = x2 * c + x1 * s;
      }
    return y;
  };
  let length = 0;
  return (ids: number[]): number[] => {
    const start = length;
    const inv = refInvFreq(cfg, d, start + ids.length);
    let xs = ids.map((id) => Array.from(P.get('model.embed_tokens.weight')!.subarray(id * H, (id + 1) * H)));
    for (let l = 0; l < dc.numLayers; l++) {
      const p = `model.layers.${l}.`;
      const w = (s: string) => P.get(p + s)!;
      const qs: number[][] = [];
      xs.forEach((x, t) => {
        const hn = rms(x, w('input_layernorm.weight'));
        qs.push(rot(lin(hn, w('self_attn.q_proj.weight'), P.get(p + 'self_attn.q_proj.bias'), nH * d, H), nH, start + t, inv));
        K[l]!.push(rot(lin(hn, w('self_attn.k_proj.weight'), P.get(p + 'self_attn.k_proj.bias'), nKv * d, H), nKv, start + t, inv));
        Vc[l]!.push(lin(hn, w('self_attn.v_proj.weight'), P.get(p + 'self_attn.v_proj.bias'), nKv * d, H));
      });
      xs = xs.map((x, t) => {
        const pos = start + t;
        const att = new Array<number>(nH * d).fill(0);
        for (let h = 0; h < nH; h++) {
          const kh = Math.floor(h / g);
          const sc = [];
          for (let j = 0; j <= pos; j++) {
            let s = 0;
            for (let e = 0; e < d; e++) s += qs[t]![h * d + e]! * K[l]![j]![kh * d + e]!;
            sc.push(s / Math.sqrt(d));
          }
          const mx = Math.max(...sc);
          const ex = sc.map((s) => Math.exp(s - mx));
          const z = ex.reduce((a, b) => a + b, 0);
          for (let j = 0; j <= pos; j++) for (let e = 0; e < d; e++) att[h * d + e] += (ex[j]! / z) * Vc[l]![j]![kh * d + e]!;
        }
        const o = lin(att, w('self_attn.o_proj.weight'), undefined, H, nH * d);
        const h1 = x.map((v, i) => v + o[i]!);
        const hn2 = rms(h1, w('post_attention_layernorm.weight'));
        const gt = lin(hn2, w('mlp.gate_proj.weight'), undefined, I, H);
        const up = lin(hn2, w('mlp.up_proj.weight'), undefined, I, H);
        const dn = lin(gt.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[i]!), w('mlp.down_proj.weight'), undefined, H, I);
        return h1.map((v, i) => v + dn[i]!);
      });
    }
    length += ids.length;
    const last = rms(xs[xs.length - 1]!, P.get('model.norm.weight')!);
    return lin(last, dc.tieWordEmbeddings ? P.get('model.embed_tokens.weight')! : P.get('lm_head.weight')!, undefined, V, H);
  };
}

test('dynamic NTK with a KV cache: prompt within the context, then decoding steps beyond it, as transformers', async () => {
  const cfg: Cfg = { ...BASE, model_type: 'llama', max_position_embeddings: 8, rope_scaling: { type: 'dynamic', factor: 4 } };
  const m = await randomModel(cfg);
  const ref = refDecoder(m, cfg);
  const cache = m.createKvCache(32);
  try {
    let ids = [3, 7, 1, 30, 22, 9];
    for (let step = 0; step < 10; step++) {
      const got = m.nextLogits(Int32Array.from(ids), cache);
      const want = ref(ids);
      const d = maxDiff(got, want);
      assert.ok(d <= 1e-4, `step ${step} (position ${cache.length - 1}): max |diff| ${d}`);
      let best = 0;
      for (let i = 1; i < want.length; i++) if (want[i]! > want[best]!) best = i;
      ids = [best];
    }
  } finally {
    cache.dispose();
  }
});
