// Layouts and config readers of each architecture, on small random models: module names are the
// checkpoints' own, InternLM2's packed projection (with biases) matches Llama's separate ones, and
// loading in 16-bit dtypes stays near the float32 reference.

import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { writeCheckpoint } from '../../src/io/checkpoint.ts';
import type { HostTensor } from '../../src/io/safetensors.ts';
import { createModel, loadModel } from '../../src/models/index.ts';
import { noGrad } from '../../src/tensor/index.ts';
import { LOGITS_ATOL, MODELS, floats, get, maxAbsDiff, readExpected, rows } from './fixtures.ts';

/** bf16 keeps 8 significant bits: on the llama fixture the logits move by 4.5e-3 at most (measured). */
const BF16_LOGITS_ATOL = 2e-2;
const F16_LOGITS_ATOL = 2e-3;

const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const SMALL = { vocab_size: 40, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 1, num_attention_heads: 6, num_key_value_heads: 3, initializer_range: 0.2 };

function layerNames(config: Record<string, unknown>): string[] {
  return [...createModel(config).namedParameters()].map(([n]) => n);
}

test('each model_type names its modules as its checkpoints do', () => {
  assert.deepEqual(layerNames({ ...SMALL, model_type: 'llama' }), [
    'model.embed_tokens.weight',
    'model.layers.0.input_layernorm.weight',
    'model.layers.0.self_attn.q_proj.weight',
    'model.layers.0.self_attn.k_proj.weight',
    'model.layers.0.self_attn.v_proj.weight',
    'model.layers.0.self_attn.o_proj.weight',
    'model.layers.0.post_attention_layernorm.weight',
    'model.layers.0.mlp.gate_proj.weight',
    'model.layers.0.mlp.up_proj.weight',
    'model.layers.0.mlp.down_proj.weight',
    'model.norm.weight',
    'lm_head.weight',
  ]);
  const withBias = layerNames({ ...SMALL, model_type: 'llama', attention_bias: true, mlp_bias: true });
  for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) assert.ok(withBias.includes(`model.layers.0.self_attn.${n}.bias`));
  assert.ok(withBias.includes('model.layers.0.mlp.down_proj.bias'));
  const qwen = layerNames({ ...SMALL, model_type: 'qwen2', tie_word_embeddings: true });
  assert.ok(qwen.includes('model.layers.0.self_attn.v_proj.bias') && !qwen.includes('model.layers.0.self_attn.o_proj.bias') && !qwen.includes('lm_head.weight'));
  assert.deepEqual(layerNames({ ...SMALL, model_type: 'mistral' }), layerNames({ ...SMALL, model_type: 'llama' }));
  assert.deepEqual(layerNames({ ...SMALL, model_type: 'internlm2', bias: false }), [
    'model.tok_embeddings.weight',
    'model.layers.0.attention_norm.weight',
    'model.layers.0.attention.wqkv.weight',
    'model.layers.0.attention.wo.weight',
    'model.layers.0.ffn_norm.weight',
    'model.layers.0.feed_forward.w1.weight',
    'model.layers.0.feed_forward.w3.weight',
    'model.layers.0.feed_forward.w2.weight',
    'model.norm.weight',
    'output.weight',
  ]);
});

test('internlm2 with biases: packing a llama model per kv group (weights and biases) keeps its logits', async () => {
  const llama = createModel({ ...SMALL, model_type: 'llama', attention_bias: true }, { seed: 3 });
  const p = new Map([...llama.namedParameters()].map(([n, t]) => [n, { shape: t.shape, data: t.toFloat32Array() }]));
  const { hidden_size: h, num_attention_heads: nH, num_key_value_heads: nKv } = SMALL;
  const d = h / nH;
  const g = nH / nKv;
  const rowLen = (name: string) => (name.endsWith('.weight') ? h : 1);
  const out = new Map<string, HostTensor>();
  const put = (name: string, shape: readonly number[], data: Float32Array) => out.set(name, { dtype: 'F32', shape, data });
  for (const kind of ['weight', 'bias']) {
    const q = p.get(`model.layers.0.self_attn.q_proj.${kind}`)!.data;
    const k = p.get(`model.layers.0.self_attn.k_proj.${kind}`)!.data;
    const v = p.get(`model.layers.0.self_attn.v_proj.${kind}`)!.data;
    const r = rowLen(`.${kind}`);
    const packed = new Float32Array((nH + 2 * nKv) * d * r);
    let at = 0;
    const copy = (src: Float32Array, head: number) => {
      packed.set(src.subarray(head * d * r, (head + 1) * d * r), at);
      at += d * r;
    };
    for (let kv = 0; kv < nKv; kv++) {
      for (let j = 0; j < g; j++) copy(q, kv * g + j);
      copy(k, kv);
      copy(v, kv);
    }
    put(`model.layers.0.attention.wqkv.${kind}`, kind === 'weight' ? [(nH + 2 * nKv) * d, h] : [(nH + 2 * nKv) * d], packed);
  }
  const rename: Record<string, string> = {
    'model.embed_tokens.weight': 'model.tok_embeddings.weight',
    'model.layers.0.self_attn.o_proj.weight': 'model.layers.0.attention.wo.weight',
    'model.layers.0.self_attn.o_proj.bias': 'model.layers.0.attention.wo.bias',
    'model.layers.0.mlp.gate_proj.weight': 'model.layers.0.feed_forward.w1.weight',
    'model.layers.0.mlp.up_proj.weight': 'model.layers.0.feed_forward.w3.weight',
    'model.layers.0.mlp.down_proj.weight': 'model.layers.0.feed_forward.w2.weight',
    'model.layers.0.input_layernorm.weight': 'model.layers.0.attention_norm.weight',
    'model.layers.0.post_attention_layernorm.weight': 'model.layers.0.ffn_norm.weight',
    'model.norm.weight': 'model.norm.weight',
    'lm_head.weight': 'output.weight',
  };
  for (const [from, to] of Object.entries(rename)) put(to, p.get(from)!.shape, p.get(from)!.data);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-internlm2-'));
  dirs.push(dir);
  writeCheckpoint(dir, out);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...SMALL, model_type: 'internlm2', bias: true }));
  const internlm2 = await loadModel(dir);
  const input = [[1, 5, 9, 13, 17, 21, 25], [2, 4, 6, 8, 10, 12, 14]];
  const a = noGrad(() => llama.forward(input).logits.toFloat32Array());
  const b = noGrad(() => internlm2.forward(input).logits.toFloat32Array());
  assert.ok(maxAbsDiff(a, b) <= LOGITS_ATOL, `max |diff| ${maxAbsDiff(a, b)}`);
});

test('mistral: sequences longer than sliding_window are refused, shorter ones run', () => {
  const m = createModel({ ...SMALL, model_type: 'mistral', sliding_window: 4 });
  assert.equal(m.forward([[1, 2, 3, 4]]).logits.shape[1], 4);
  assert.throws(() => m.forward([[1, 2, 3, 4, 5]]), (e: unknown) => e instanceof XtunerError && e.message.includes('sliding_window'));
  // Packed rows count per sample.
  assert.equal(m.forward([[1, 2, 3, 4, 5, 6]], { positionIds: [[0, 1, 2, 0, 1, 2]], cuSeqlens: [0, 3, 6] }).logits.shape[1], 6);
});

test('16-bit weights: the llama fixture in bf16 and f16 stays near the float32 logits', async () => {
  const exp = readExpected('llama_forward');
  for (const [dtype, atol] of [['bfloat16', BF16_LOGITS_ATOL], ['float16', F16_LOGITS_ATOL]] as const) {
    const m = await loadModel(`${MODELS}/llama_forward/model`, { dtype });
    assert.ok([...m.namedParameters()].every(([, t]) => t.dtype === dtype));
    const logits = noGrad(() => m.forward(rows(get(exp, 'input_ids'))).logits.toFloat32Array());
    const diff = maxAbsDiff(logits, floats(get(exp, 'logits')));
    assert.ok(diff <= atol, `${dtype}: max |diff| ${diff} > ${atol}`);
  }
});
