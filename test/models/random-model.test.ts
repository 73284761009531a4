// Checks on a model that is not a fixture (other shapes, seed, llama3 rope, every bias): properties
// that must hold whatever the weights, each checked against an independent computation.

import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createModel, loadModel, type CausalLM } from '../../src/models/index.ts';
import { pickToken, argmax } from '../../src/generate/sampling.ts';
import { Rng, memoryStats, noGrad } from '../../src/tensor/index.ts';
import { bf16BitsToF32, f32ToBf16Bits } from '../../src/tensor/dtype.ts';
import { LOGITS_ATOL, maxAbsDiff } from './fixtures.ts';

const CONFIG = {
  model_type: 'llama',
  vocab_size: 97,
  hidden_size: 48,
  intermediate_size: 80,
  num_hidden_layers: 3,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  head_dim: 8,
  attention_bias: true,
  mlp_bias: true,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 64,
  rope_theta: 500,
  rope_scaling: { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
  eos_token_id: 2,
  initializer_range: 0.2, // larger than the default so that logits differ clearly between tokens
};

const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function model(): CausalLM {
  return createModel(CONFIG, { seed: 7 });
}

function ids(n: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => 3 + rng.int(90));
}

/** Logits of the last position after a full forward over `seq` (no cache). */
function lastLogits(m: CausalLM, seq: number[]): Float32Array {
  return noGrad(() => {
    const l = m.forward([seq]).logits.toFloat32Array();
    return l.slice((seq.length - 1) * 97, seq.length * 97);
  });
}

test('random model: a packed row equals its samples run one by one', () => {
  const m = model();
  const samples = [ids(3, 1), ids(6, 2), ids(5, 3)];
  const packed = samples.flat();
  const positions = samples.flatMap((s) => s.map((_, i) => i));
  const { logits } = noGrad(() => m.forward([packed], { positionIds: [positions], cuSeqlens: [0, 3, 9, 14] }));
  const got = logits.toFloat32Array();
  let offset = 0;
  for (const s of samples) {
    const alone = noGrad(() => m.forward([s]).logits.toFloat32Array());
    const d = maxAbsDiff(got.subarray(offset * 97, (offset + s.length) * 97), alone);
    assert.ok(d <= LOGITS_ATOL, `sample at ${offset}: max |diff| ${d}`);
    offset += s.length;
  }
  // Without the boundaries the later samples do see the earlier ones: the check above can fail.
  const leaky = noGrad(() => m.forward([packed], { positionIds: [positions] }).logits.toFloat32Array());
  assert.ok(maxAbsDiff(leaky.subarray(3 * 97), got.subarray(3 * 97)) > 1e-3);
});

test('random model: KV-cached greedy decoding equals recomputing the full forward each step', () => {
  const m = model();
  const prompt = ids(5, 4);
  const got = m.generate(prompt, { maxNewTokens: 10, stopIds: [] });
  const seq = [...prompt];
  for (let i = 0; i < 10; i++) seq.push(argmax(lastLogits(m, seq)));
  assert.deepEqual(got, seq.slice(prompt.length));
  assert.ok(new Set(got).size > 1, 'not a degenerate constant output');
  // Decoding frees every tensor it makes.
  const before = memoryStats();
  m.generate(prompt, { maxNewTokens: 5, stopIds: [] });
  const afterGen = memoryStats();
  assert.equal(afterGen.liveTensors, before.liveTensors);
  assert.equal(afterGen.liveBytes, before.liveBytes);
});

test('random model: seeded sampling with the cache equals the same draws over full forwards', () => {
  const m = model();
  const prompt = ids(4, 5);
  const opts = { temperature: 0.8, topK: 20, topP: 0.9, repetitionPenalty: 1.3 };
  const got = m.generate(prompt, { ...opts, maxNewTokens: 8, stopIds: [], seed: 11 });
  assert.deepEqual(m.generate(prompt, { ...opts, maxNewTokens: 8, stopIds: [], seed: 11 }), got, 'same seed, same ids');
  const rng = new Rng(11);
  const seq = [...prompt];
  for (let i = 0; i < 8; i++) seq.push(pickToken(lastLogits(m, seq), seq, opts, () => rng.uniform()));
  assert.deepEqual(got, seq.slice(prompt.length));
});

test('random model: stop ids end generation (included), onToken can stop it', () => {
  const m = model();
  const prompt = ids(5, 4);
  const free = m.generate(prompt, { maxNewTokens: 10, stopIds: [] });
  const stopAt = free[3]!;
  const firstIndex = free.indexOf(stopAt);
  assert.deepEqual(m.generate(prompt, { maxNewTokens: 10, stopIds: [stopAt] }), free.slice(0, firstIndex + 1));
  assert.deepEqual(m.generate(prompt, { maxNewTokens: 10, stopIds: [], onToken: (_id, i) => i < 1 }), free.slice(0, 2));
});

test('random model: gradients of the o_proj and mlp biases agree with finite differences', () => {
  const m = model();
  const input = [ids(7, 8), ids(7, 9)];
  const labels = input.map((r) => r.map((v, i) => (i < 2 ? -100 : v)));
  const params = new Map(m.namedParameters());
  const { loss } = m.forward(input, { labels });
  loss!.backward();
  const lossAt = () => noGrad(() => m.forward(input, { labels }).loss!.item());
  const eps = 1e-2;
  for (const name of ['model.layers.1.self_attn.o_proj.bias', 'model.layers.2.mlp.down_proj.bias', 'model.layers.0.mlp.up_proj.bias']) {
    const p = params.get(name)!;
    const grad = p.grad!.toFloat32Array();
    const base = p.toFloat32Array();
    const i = argmax(grad.map(Math.abs)); // the largest entry: finite differences resolve it well
    const at = (delta: number) => {
      const v = base.slice();
      v[i] = v[i]! + delta;
      p.assign(v);
      return lossAt();
    };
    const fd = (at(eps) - at(-eps)) / (2 * eps);
    p.assign(base);
    assert.ok(Math.abs(fd - grad[i]!) <= 0.05 * Math.abs(grad[i]!) + 1e-4, `${name}[${i}]: autograd ${grad[i]} vs finite difference ${fd}`);
  }
});

test('random model: saveHf then loadModel gives the same weights (sharded, and bf16)', async () => {
  const m = model();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-save-'));
  dirs.push(dir);
  m.saveHf(dir, { maxShardBytes: 20_000 });
  const files = fs.readdirSync(dir).sort();
  assert.ok(files.includes('model.safetensors.index.json') && files.includes('config.json'));
  assert.ok(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length > 2, files.join(' '));
  assert.ok(!files.some((f) => f.includes('.tmp-')));
  const back = await loadModel(dir);
  const orig = new Map(m.namedParameters());
  assert.deepEqual([...back.namedParameters()].map(([n]) => n), [...orig.keys()]);
  for (const [name, t] of back.namedParameters()) assert.deepEqual(t.toFloat32Array(), orig.get(name)!.toFloat32Array(), name);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).torch_dtype, 'float32');

  const bf = path.join(dir, 'bf16');
  m.saveHf(bf, { dtype: 'bfloat16' });
  assert.deepEqual(fs.readdirSync(bf).sort(), ['config.json', 'model.safetensors']);
  const half = await loadModel(bf);
  for (const [name, t] of half.namedParameters()) {
    const want = orig.get(name)!.toFloat32Array().map((x) => bf16BitsToF32(f32ToBf16Bits(x)));
    assert.deepEqual(t.toFloat32Array(), want, name);
  }
});
