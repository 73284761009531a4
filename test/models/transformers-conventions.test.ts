// Config defaults per architecture, PEFT adapters (patterns, rsLoRA, regex targets), merging
// dtypes, and save/load round trips, against transformers 5.x / peft 0.21 conventions. Expected
// values are float64 restatements of their formulas.

import test from 'node:test';
import { tmpDir } from '../tmp-dir.ts';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createModel, loadModel } from '../../src/models/index.ts';
import { CheckpointReader, writeCheckpoint } from '../../src/io/checkpoint.ts';
import { hostToFloat32, writeSafetensors, type HostTensor } from '../../src/io/safetensors.ts';
import { loadAdapter } from '../../src/peft/adapter.ts';
import { mergeAdapterToHf } from '../../src/peft/merge.ts';
import { LoRALinear, injectLora, mergeLora } from '../../src/peft/lora.ts';
import { Linear } from '../../src/nn/index.ts';
import { noGrad, tensor } from '../../src/tensor/index.ts';
import { bf16BitsToF32, f32ToBf16Bits } from '../../src/tensor/dtype.ts';

const SMALL = { vocab_size: 40, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, initializer_range: 0.2 };

function tmp(): string {
  return tmpDir('xt-conventions-');
}

// ---------- config defaults (transformers 5.x configuration_mistral.py / configuration_qwen2.py) ----------

test('Mistral config without a sliding_window key gets MistralConfig default 4096', () => {
  // MistralConfig.__init__(..., sliding_window=4096, ...): only an explicit null disables the window.
  const m = createModel({ ...SMALL, model_type: 'mistral' });
  assert.equal(m.decoderConfig.slidingWindow, 4096, 'transformers windows attention at 4096 when the key is absent');
  const off = createModel({ ...SMALL, model_type: 'mistral', sliding_window: null });
  assert.equal(off.decoderConfig.slidingWindow, null);
});

test('Qwen2 use_sliding_window true without sliding_window gets Qwen2Config default 4096', () => {
  // Qwen2Config.__init__(..., use_sliding_window=False, sliding_window=4096, max_window_layers=28)
  const m = createModel({ ...SMALL, model_type: 'qwen2', use_sliding_window: true, max_window_layers: 0 });
  assert.equal(m.decoderConfig.slidingWindow, 4096);
});

test('Qwen2 windows only layers at or past max_window_layers (or those layer_types names): none of them, no window', () => {
  const window = (extra: Record<string, unknown>) => createModel({ ...SMALL, model_type: 'qwen2', use_sliding_window: true, sliding_window: 64, ...extra }).decoderConfig.slidingWindow;
  assert.equal(window({}), null, 'max_window_layers 28 (the default) >= 2 layers');
  assert.equal(window({ max_window_layers: 1 }), 64);
  assert.equal(window({ max_window_layers: 0, layer_types: ['full_attention', 'full_attention'] }), null);
  assert.equal(window({ layer_types: ['full_attention', 'sliding_attention'] }), 64);
});

test('dynamic NTK uses the per-architecture max_position_embeddings default (Mistral 131072, Qwen2 32768)', () => {
  for (const [modelType, want] of [['mistral', 4096 * 32], ['qwen2', 32768], ['llama', 2048]] as const) {
    const m = createModel({ ...SMALL, model_type: modelType, sliding_window: null, rope_scaling: { type: 'dynamic', factor: 2 } });
    assert.equal(m.decoderConfig.rope.originalMaxPositions, want, `${modelType}: max_position_embeddings default`);
  }
});

test('num_key_value_heads absent: MistralConfig default 8 (not num_attention_heads)', () => {
  // transformers 5.18 configuration_mistral.py: num_key_value_heads: int = 8; configuration_qwen2.py: = 32
  // (only LlamaConfig defaults it to num_attention_heads). 16 q heads, so 8 and 32 are both unlike 16.
  const cfg = { ...SMALL, hidden_size: 64, num_attention_heads: 16, num_key_value_heads: undefined, sliding_window: null };
  assert.equal(createModel({ ...cfg, model_type: 'llama' }).decoderConfig.numKvHeads, 16);
  assert.equal(createModel({ ...cfg, model_type: 'mistral' }).decoderConfig.numKvHeads, 8, 'mistral');
});

test('rope_scaling next to rope_parameters: transformers 5 takes rope_scaling (convert_rope_params_to_dict)', async () => {
  // modeling_rope_utils.py RotaryEmbeddingConfigMixin.convert_rope_params_to_dict:
  //   self.rope_parameters = rope_scaling or self.rope_parameters
  // e.g. a v5-saved config.json (rope_parameters default) where a user added rope_scaling to extend the context.
  const { ConfigFields, readRope } = await import('../../src/models/config.ts');
  const rope = readRope(
    new ConfigFields({ rope_theta: 500, rope_parameters: { rope_type: 'default', rope_theta: 500 }, rope_scaling: { type: 'linear', factor: 4 } }, 'config.json'),
    10000,
  );
  assert.equal(rope.type, 'linear', 'transformers applies the rope_scaling dict');
  assert.equal(rope.factor, 4);
});

test('llama3 rope: a top-level original_max_position_embeddings overrides the rope dict one (transformers 5 standardize_rope_params)', async () => {
  // standardize_rope_params, for rope_type in [llama3, yarn, longrope]:
  //   if hasattr(self, "original_max_position_embeddings"): rope_parameters["original_max_position_embeddings"] = self.original_max_position_embeddings
  //   else: rope_parameters.setdefault("original_max_position_embeddings", self.max_position_embeddings)
  const { ConfigFields, readRope } = await import('../../src/models/config.ts');
  const rope = readRope(
    new ConfigFields(
      {
        max_position_embeddings: 131072,
        original_max_position_embeddings: 4096,
        rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      },
      'config.json',
    ),
    500000,
  );
  assert.equal(rope.originalMaxPositions, 4096);
});

// ---------- PEFT ----------

/** A small linear-algebra reference: W [out,in] + s * B [out,r] @ A [r,in], float64. */
function refMerge(w: Float32Array, a: Float32Array, b: Float32Array, out: number, inp: number, r: number, s: number): Float64Array {
  const y = Float64Array.from(w);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inp; i++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += b[o * r + k]! * a[k * inp + i]!;
      y[o * inp + i] += s * acc;
    }
  return y;
}

test('PEFT adapter with use_rslora, rank_pattern and alpha_pattern: merge and load scale each module as PEFT does', async () => {
  const base = tmp();
  const adapter = tmp();
  const out = path.join(tmp(), 'merged');
  try {
    const m = createModel({ ...SMALL, model_type: 'llama' }, { seed: 3 });
    m.saveHf(base);
    const W = new Map([...m.namedParameters()].map(([n, t]) => [n, t.toFloat32Array()]));
    const cfg = {
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      use_rslora: true,
      target_modules: 'model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj',
      rank_pattern: { q_proj: 2 },
      alpha_pattern: { 'layers.1.self_attn.v_proj': 32 },
      bias: 'none',
      fan_in_fan_out: false,
    };
    fs.writeFileSync(path.join(adapter, 'adapter_config.json'), JSON.stringify(cfg));
    let seed = 99;
    const rnd = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.5);
    const tensors: Array<[string, HostTensor]> = [];
    // PEFT: scaling = alpha / sqrt(r) with the module's own r and alpha
    const expectScale = new Map<string, { r: number; s: number }>();
    for (const l of [0, 1])
      for (const proj of ['q_proj', 'v_proj']) {
        const mod = `model.layers.${l}.self_attn.${proj}`;
        const r = proj === 'q_proj' ? 2 : 4;
        const alpha = l === 1 && proj === 'v_proj' ? 32 : 8;
        expectScale.set(mod, { r, s: alpha / Math.sqrt(r) });
        const [outF, inF] = proj === 'q_proj' ? [24, 24] : [12, 24];
        tensors.push([`base_model.model.${mod}.lora_A.weight`, { dtype: 'F32', shape: [r, inF], data: rnd(r * inF) }]);
        tensors.push([`base_model.model.${mod}.lora_B.weight`, { dtype: 'F32', shape: [outF, r], data: rnd(outF * r) }]);
      }
    writeSafetensors(path.join(adapter, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    mergeAdapterToHf({ baseDir: base, adapterDir: adapter, outDir: out });
    const merged = CheckpointReader.open(out);
    const T = new Map(tensors);
    try {
      for (const [mod, { r, s }] of expectScale) {
        const a = T.get(`base_model.model.${mod}.lora_A.weight`)!;
        const b = T.get(`base_model.model.${mod}.lora_B.weight`)!;
        const want = refMerge(W.get(`${mod}.weight`)!, a.data as Float32Array, b.data as Float32Array, b.shape[0]!, a.shape[1]!, r, s);
        const got = hostToFloat32(merged.read(`${mod}.weight`));
        let d = 0;
        for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got[i]! - want[i]!));
        assert.ok(d < 1e-5, `${mod}: merged weight off by ${d}`);
      }
    } finally {
      merged.close();
    }
    // the live adapter gives the merged model's logits
    const live = await loadModel(base);
    const loaded = loadAdapter(live, adapter);
    assert.equal(loaded.modules.length, 4);
    const ref = await loadModel(out);
    const ids = [[1, 5, 9, 13, 17, 21, 25, 3]];
    const x = noGrad(() => live.forward(ids).logits.toFloat32Array());
    const y = noGrad(() => ref.forward(ids).logits.toFloat32Array());
    let d = 0;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
    assert.ok(d < 1e-4, `live adapter vs merged: ${d}`);
  } finally {
    for (const d of [base, adapter, path.dirname(out)]) fs.rmSync(d, { recursive: true, force: true });
  }
});

test('LoRALinear.merge over a bf16 base adds scaling * (B @ A) in float32 before rounding to bf16, as PEFT does', () => {
  // PEFT get_delta_weight: (B @ A) * scaling in the adapters' dtype (float32: autocast_adapter_dtype), then
  // base.weight.data += delta: one rounding of float32(W) + delta to bf16.
  // W = 1, B @ A = 2^-8 + 2^-20 (float32-exact), scaling 1: W + delta lies just above the midpoint between
  // 1 and the next bf16 (1 + 2^-7), so PEFT rounds up. Rounding B @ A to bf16 first (2^-8) makes it a tie -> 1.
  const w = tensor(new Uint16Array([f32ToBf16Bits(1)]), [1, 1], { dtype: 'bfloat16' });
  const layer = LoRALinear.withWeights(new Linear(w), new Float32Array([2 ** -8 + 2 ** -20]), new Float32Array([1]), { r: 1, alpha: 1 });
  const merged = layer.merge();
  const got = merged.weight.toFloat32Array()[0]!;
  const want = bf16BitsToF32(f32ToBf16Bits(Math.fround(1 + Math.fround(2 ** -8 + 2 ** -20))));
  assert.equal(want, 1 + 2 ** -7);
  assert.equal(got, want, `merged bf16 weight ${got}, PEFT gives ${want}`);
});

// ---------- save / load ----------

test('tied model saves without lm_head, sharded with an index, and loads back bit for bit; bf16 files convert exactly', async () => {
  const dir = tmp();
  try {
    const m = createModel({ ...SMALL, model_type: 'qwen2', tie_word_embeddings: true, dtype: 'float32' }, { seed: 5 });
    m.saveHf(dir, { maxShardBytes: 4000 });
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.ok(!('lm_head.weight' in index.weight_map));
    assert.ok(Object.values(index.weight_map).every((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f as string)));
    const back = await loadModel(dir);
    const a = new Map([...m.namedParameters()].map(([n, t]) => [n, t.toFloat32Array()]));
    for (const [n, t] of back.namedParameters()) assert.deepEqual(t.toFloat32Array(), a.get(n), n);
    // rotary buffers and a head a tied checkpoint still carries are ignored
    const cfgBack = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    assert.equal(cfgBack.dtype, 'float32');
    assert.equal(cfgBack.torch_dtype, undefined);
    // bf16 save, load as float32: the bf16 values exactly
    const dir16 = path.join(dir, 'bf16');
    m.saveHf(dir16, { dtype: 'bfloat16' });
    const r = CheckpointReader.open(dir16);
    const raw = hostToFloat32(r.read('model.embed_tokens.weight'));
    r.close();
    const b16 = await loadModel(dir16);
    assert.deepEqual([...b16.namedParameters()].find(([n]) => n === 'model.embed_tokens.weight')![1].toFloat32Array(), raw);
    const e = a.get('model.embed_tokens.weight')!;
    for (let i = 0; i < e.length; i++) assert.equal(raw[i], bf16BitsToF32(f32ToBf16Bits(e[i]!)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('extra rotary inv_freq buffers and a tied head in the file are ignored on load', async () => {
  const dir = tmp();
  try {
    const m = createModel({ ...SMALL, model_type: 'llama', tie_word_embeddings: true }, { seed: 1 });
    const out = new Map<string, HostTensor>();
    for (const [n, t] of m.namedParameters()) out.set(n, { dtype: 'F32', shape: t.shape, data: t.toFloat32Array() });
    out.set('model.layers.0.self_attn.rotary_emb.inv_freq', { dtype: 'F32', shape: [3], data: new Float32Array(3) });
    out.set('model.rotary_emb.inv_freq', { dtype: 'F32', shape: [3], data: new Float32Array(3) });
    out.set('lm_head.weight', { dtype: 'F32', shape: [40, 24], data: new Float32Array(960) });
    writeCheckpoint(dir, out);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...SMALL, model_type: 'llama', tie_word_embeddings: true }));
    const back = await loadModel(dir);
    const ids = [[1, 2, 3]];
    assert.deepEqual(noGrad(() => back.forward(ids).logits.toFloat32Array()), noGrad(() => m.forward(ids).logits.toFloat32Array()));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("generation stops at generation_config.json's eos_token_id where the folder has one, else config.json's", async () => {
  const dir = tmp();
  const m = createModel({ ...SMALL, model_type: 'qwen2', eos_token_id: 3 }, { seed: 1 });
  m.saveHf(dir);
  assert.deepEqual((await loadModel(dir)).defaultStopIds(), [3]);
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [3, 7], do_sample: true }));
  assert.deepEqual((await loadModel(dir)).defaultStopIds(), [3, 7]);
  fs.writeFileSync(path.join(dir, 'generation_config.json'), '{"eos_token_id": [3,');
  await assert.rejects(loadModel(dir), /generation_config\.json: not valid JSON/);
});

test('saveHf refuses a model with LoRA layers (base_layer / lora_A names are no Hugging Face folder), and saves it merged', () => {
  const dir = tmp();
  const m = createModel({ ...SMALL, model_type: 'llama' }, { seed: 2 });
  injectLora(m, { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: ['q_proj'] });
  assert.throws(() => m.saveHf(dir), /belongs to a LoRA layer/);
  assert.ok(!fs.existsSync(path.join(dir, 'model.safetensors')));
  mergeLora(m);
  m.saveHf(dir);
  assert.ok(fs.existsSync(path.join(dir, 'model.safetensors')));
});
