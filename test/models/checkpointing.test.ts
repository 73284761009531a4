// Activation checkpointing per decoder layer (CausalLM.setGradientCheckpointing): the gradients of
// PyTorch's llama fixture with it on, the same loss and every gradient as without it on a random
// model whose LoRA dropout draws masks (replayed in the recomputation), and a lower peak memory.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createModel, loadModel, type CausalLM } from '../../src/models/index.ts';
import { DecoderLayer } from '../../src/models/decoder.ts';
import { injectLora } from '../../src/peft/lora.ts';
import { DropoutStream, Rng, memoryStats, resetPeakBytes, tensor, tidy, type Tensor } from '../../src/tensor/index.ts';
import { LOSS_ATOL, MODELS, assertClose, assertGradClose, floats, get, lossAndGrads, readExpected, rows } from './fixtures.ts';

/** With and without checkpointing: the same float32 computation run twice. */
const SAME_LOSS_ATOL = 1e-6;
const SAME_GRAD_RTOL = 1e-5;

const CONFIG = {
  model_type: 'llama', vocab_size: 101, hidden_size: 32, intermediate_size: 96, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, initializer_range: 0.2,
};

/** Random model, LoRA with dropout on every linear, and every weight trainable (so every gradient is checked). */
function model(layers: number): { m: CausalLM; rng: DropoutStream } {
  const m = createModel({ ...CONFIG, num_hidden_layers: layers }, { seed: 5 });
  const rng = new Rng(9);
  const stream = new DropoutStream(rng);
  injectLora(m, { r: 4, loraAlpha: 8, loraDropout: 0.3, targetModules: null }, rng, stream);
  // B starts at zero (so A's gradient would be zero): give it values
  const init = new Rng(11);
  for (const [n, p] of m.namedParameters()) {
    if (n.includes('lora_B')) p.assign(tensor(Float32Array.from({ length: p.size }, () => init.uniform() - 0.5), [...p.shape]));
  }
  for (const p of m.parameters()) p.requiresGrad = true;
  m.train();
  return { m, rng: stream };
}

function ids(b: number, t: number, seed: number): number[][] {
  const r = new Rng(seed);
  return Array.from({ length: b }, () => Array.from({ length: t }, () => r.int(101)));
}

/** Loss and every gradient by name after one forward/backward from the rng state `state`; grads cleared after. */
function run(m: CausalLM, rng: DropoutStream, state: ReturnType<DropoutStream['getState']>, x: number[][]): { loss: number; grads: Map<string, Float32Array> } {
  rng.setState(state);
  return lossAndGrads(m, () => m.forward(x, { labels: x }) as { loss?: Tensor });
}

/** Largest gradient difference relative to the reference's max |value|, over every parameter. */
function worstGradDiff(a: Map<string, Float32Array>, ref: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [n, g] of ref) {
    const h = a.get(n)!;
    let scale = 0;
    let d = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i]!));
      d = Math.max(d, Math.abs(g[i]! - h[i]!));
    }
    assert.ok(scale > 0, `${n}: zero gradient`);
    worst = Math.max(worst, d / scale);
  }
  return worst;
}

test('checkpointing: llama fixture loss and every gradient match PyTorch with layers checkpointed', async () => {
  const exp = readExpected('llama_forward');
  const m = await loadModel(`${MODELS}/llama_forward/model`);
  m.train();
  m.setGradientCheckpointing(true);
  assert.equal(m.gradientCheckpointing, true);
  const { loss } = m.forward(rows(get(exp, 'input_ids')), { labels: rows(get(exp, 'labels')) });
  assertClose([loss!.item()], floats(get(exp, 'loss')), LOSS_ATOL, 'loss');
  loss!.backward();
  for (const [name, p] of m.namedParameters()) assertGradClose(p.grad!.toFloat32Array(), floats(get(exp, `grad.${name}`)), name);
});

test('checkpointing: same loss and every gradient as without, LoRA dropout masks replayed', () => {
  const { m, rng } = model(3);
  const x = ids(2, 17, 1);
  const state = rng.getState();
  const plain = run(m, rng, state, x);
  const after = rng.getState();
  m.setGradientCheckpointing(true, [rng]);
  const ckpt = run(m, rng, state, x);
  assert.deepEqual(rng.getState(), after, 'the recomputation leaves the generator where the forward left it');
  assert.ok(Math.abs(plain.loss - ckpt.loss) <= SAME_LOSS_ATOL, `loss ${ckpt.loss} vs ${plain.loss}`);
  const d = worstGradDiff(ckpt.grads, plain.grads);
  assert.ok(d <= SAME_GRAD_RTOL, `gradients differ by ${d} of their scale`);
  // The comparison can fail: without the generator replayed, the recomputation draws other masks.
  m.setGradientCheckpointing(true, []);
  assert.ok(worstGradDiff(run(m, rng, state, x).grads, plain.grads) > 1e-2, 'other dropout masks should change the gradients');
  // and the masks matter: without dropout the loss is another one
  m.eval();
  assert.notEqual(run(m, rng, state, x).loss, plain.loss);
});

test('checkpointing: peak memory of a training step is clearly lower', () => {
  const { m, rng } = model(6);
  const x = ids(1, 384, 2);
  const state = rng.getState();
  const peak = (): number => {
    const base = memoryStats().liveBytes;
    resetPeakBytes();
    run(m, rng, state, x);
    return memoryStats().peakBytes - base;
  };
  m.setGradientCheckpointing(false);
  const plain = peak();
  m.setGradientCheckpointing(true, [rng]);
  const ckpt = peak();
  console.log(`checkpointing peak: without ${(plain / 2 ** 20).toFixed(1)} MiB, with ${(ckpt / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(ckpt < 0.6 * plain, `with ${ckpt} bytes, without ${plain}`);
});

test('checkpointing: the backward frees each layer\'s saved input as it passes, not at the end', () => {
  const layers = 6;
  const t = 1024;
  const m = createModel({ ...CONFIG, num_hidden_layers: layers }, { seed: 5 });
  const rng = new DropoutStream(new Rng(9));
  injectLora(m, { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: null }, new Rng(9), rng); // small gradients
  m.train();
  m.setGradientCheckpointing(true, [rng]);
  const x = ids(1, t, 3);
  const live: number[] = []; // at each layer's forward: the first pass, then the recomputations, last layer first
  const forward = DecoderLayer.prototype.forward;
  DecoderLayer.prototype.forward = function (this: DecoderLayer, ...args) {
    live.push(memoryStats().liveBytes);
    return forward.apply(this, args);
  };
  try {
    tidy(() => m.forward(x, { labels: x }).loss!.backward());
  } finally {
    DecoderLayer.prototype.forward = forward;
  }
  for (const p of m.parameters()) p.grad = null;
  assert.equal(live.length, 2 * layers);
  const hidden = t * CONFIG.hidden_size * 4; // one layer's saved input, float32
  const recomputed = live.slice(layers); // layer 5, 4, ..., 0
  // 5 fewer saved inputs at the last recomputation than at the first (the LoRA gradients made in
  // between are ~1/10 of a hidden state per layer)
  assert.ok(recomputed[0]! - recomputed[layers - 1]! > (layers - 2) * hidden, `live bytes at the recomputations: ${recomputed.join(', ')}`);
});
