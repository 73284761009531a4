import test from 'node:test';
import assert from 'node:assert/strict';
import { XtunerError } from '../../src/errors.ts';
import { philox4x32 } from '../../src/backends/cpu/dropout.ts';
import { loadModel } from '../../src/models/index.ts';
import { Linear } from '../../src/nn/index.ts';
import { clipCoefficient, clipGradNorm } from '../../src/optim/clip.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { defaultTargetModules, injectLora, LoRALinear, loraLayers, mergeLora } from '../../src/peft/lora.ts';
import { DropoutStream, readScalars, Rng, tensor } from '../../src/tensor/index.ts';
import {
  assertClose, assertCloseRel, BASE_MODEL, FIX, GRAD_REL_TOL, LLAMA_TARGETS, LOGITS_TOL, maxAbsDiff, peftParamName, readExpected,
} from './helpers.ts';

const lora = readExpected('lora');
/** One AdamW step moves a weight by about lr (1e-3); 1e-6 resolves that to 0.1%. */
const STEP_TOL = 1e-6;
/** torch.nn.utils.clip_grad_norm_ adds this to the norm. */
const CLIP_EPS = 1e-6;

/** The fixture's model: llama_forward with PEFT LoRA (r 8, alpha 16) holding the fixture's `before.*` weights. */
async function fixtureLoraModel() {
  const model = await loadModel(BASE_MODEL);
  const report = injectLora(model, { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: LLAMA_TARGETS });
  for (const [path, layer] of loraLayers(model)) {
    layer.lora_A.weight.assign(lora.get(`before.${peftParamName(path, 'A')}`));
    layer.lora_B.weight.assign(lora.get(`before.${peftParamName(path, 'B')}`));
  }
  return { model, report };
}

test('LoRA on llama_forward matches PEFT: logits, loss, every LoRA gradient, grad norm, one clipped AdamW step', async () => {
  const { model, report } = await fixtureLoraModel();
  assert.equal(report.modules.length, 14);
  model.train();
  const { logits, loss } = model.forward(lora.ids, { labels: lora.labels });
  assertClose(logits.toFloat32Array(), lora.get('logits'), LOGITS_TOL, 'logits');
  assertClose([loss!.item()], lora.get('loss'), LOGITS_TOL, 'loss');
  loss!.backward();

  const named = [...model.namedParameters()];
  const trainable = named.filter(([, p]) => p.requiresGrad);
  assert.equal(trainable.length, 28);
  for (const [name, p] of named) {
    if (!p.requiresGrad) assert.equal(p.grad, null, `frozen ${name} got a gradient`);
  }
  // The fixture's grad.* were saved after clip_grad_norm_ scaled them in place: compare ours scaled alike.
  const fixtureNorm = lora.get('grad_norm')[0]!;
  const coef = 1 / (fixtureNorm + CLIP_EPS);
  for (const [name, p] of trainable) {
    const m = /^(.+)\.lora_([AB])\.weight$/.exec(name)!;
    const ours = p.grad!.toFloat32Array().map((g) => g * coef);
    assertCloseRel(ours, lora.get(`grad.${peftParamName(m[1]!, m[2] as 'A' | 'B')}`), GRAD_REL_TOL, `grad of ${name}`);
  }
  const norm = clipGradNorm(trainable.map(([, p]) => p), 1.0);
  assert.ok(Math.abs(norm - fixtureNorm) <= GRAD_REL_TOL * fixtureNorm, `grad norm ${norm} vs ${fixtureNorm}`);

  const opt = new AdamW(trainable, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
  opt.step();
  for (const [name, p] of trainable) {
    const m = /^(.+)\.lora_([AB])\.weight$/.exec(name)!;
    assertClose(p.toFloat32Array(), lora.get(`after_adamw.${peftParamName(m[1]!, m[2] as 'A' | 'B')}`), STEP_TOL, `after AdamW ${name}`);
  }
});

test("the trainer's clipping (norm and coefficient left on the device, applied inside AdamW) gives PEFT's step too", async () => {
  const { model } = await fixtureLoraModel();
  model.train();
  model.forward(lora.ids, { labels: lora.labels }).loss!.backward();
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  const grads = trainable.map(([, p]) => p.grad!.toFloat32Array());
  const { norm, coef } = clipCoefficient(trainable.map(([, p]) => p), 1.0);
  const opt = new AdamW(trainable, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
  opt.step(coef);
  const fixtureNorm = lora.get('grad_norm')[0]!;
  const [n] = readScalars([norm]);
  assert.ok(Math.abs(n! - fixtureNorm) <= GRAD_REL_TOL * fixtureNorm, `grad norm ${n} vs ${fixtureNorm}`);
  trainable.forEach(([name, p], k) => {
    const m = /^(.+)\.lora_([AB])\.weight$/.exec(name)!;
    assertClose(p.toFloat32Array(), lora.get(`after_adamw.${peftParamName(m[1]!, m[2] as 'A' | 'B')}`), STEP_TOL, `after AdamW ${name}`);
    assert.deepEqual(p.grad!.toFloat32Array(), grads[k], `${name}: the gradient is not scaled in place`);
  });
});

test('fresh adapters: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, so the model is unchanged; seeded', async () => {
  const base = await loadModel(BASE_MODEL);
  const before = base.forward(lora.ids).logits.toFloat32Array();
  injectLora(base, { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: null }, new Rng(5));
  assert.deepEqual(base.forward(lora.ids).logits.toFloat32Array(), before);
  const layers = loraLayers(base);
  for (const [path, l] of layers) {
    const a = l.lora_A.weight.toFloat32Array();
    const bound = 1 / Math.sqrt(l.inFeatures);
    assert.ok(a.every((v) => Math.abs(v) <= bound), `${path}: A outside the Kaiming bound`);
    const variance = a.reduce((s, v) => s + v * v, 0) / a.length;
    assert.ok(Math.abs(variance / (bound * bound / 3) - 1) < 0.25, `${path}: A variance ${variance}`); // uniform: bound^2 / 3
    assert.ok(l.lora_B.weight.toFloat32Array().every((v) => v === 0));
    assert.equal(l.scaling, 2);
  }
  const again = await loadModel(BASE_MODEL);
  injectLora(again, { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: null }, new Rng(5));
  const other = await loadModel(BASE_MODEL);
  injectLora(other, { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: null }, new Rng(6));
  const a0 = (m: typeof base) => loraLayers(m)[0]![1].lora_A.weight.toFloat32Array();
  assert.deepEqual(a0(again), a0(base));
  assert.notDeepEqual(a0(other), a0(base));
});

test("XTuner's default targets: every linear layer but the output head; everything else frozen", async () => {
  const llama = await loadModel(BASE_MODEL);
  assert.deepEqual(defaultTargetModules(llama), ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  const report = injectLora(llama, { r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: null });
  assert.equal(report.modules.length, 14);
  assert.ok(!report.modules.includes('lm_head'));
  assert.ok(llama.getSubmodule('lm_head') instanceof Linear);
  // per layer: A [4, in] + B [out, 4] for q(64), k(32), v(32), o(64), gate(176), up(176), down(64 out, 176 in)
  const perLayer = 4 * (64 + 64) + 4 * (64 + 32) * 2 + 4 * (64 + 64) + 4 * (64 + 176) * 3;
  assert.equal(report.trainableParams, 2 * perLayer);
  const trainable = [...llama.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n);
  assert.ok(trainable.every((n) => /\.lora_[AB]\.weight$/.test(n)));
  const internlm2 = await loadModel(`${FIX}/internlm2/model`);
  assert.deepEqual(defaultTargetModules(internlm2), ['w1', 'w2', 'w3', 'wo', 'wqkv']);
});

test('dropout: active in training only, inverted, drawn from the layer\'s dropout stream', async () => {
  const w = tensor(new Float32Array(6 * 5).map((_, i) => Math.sin(i)), [6, 5]);
  const rng = new Rng(3);
  const layer = LoRALinear.fromBase(new Linear(w), { r: 2, alpha: 4, dropout: 0.5, rng, dropoutStream: new DropoutStream(rng) });
  layer.lora_B.weight.assign(new Float32Array(12).map((_, i) => 0.1 * (i + 1)));
  const x = tensor(new Float32Array(3 * 5).map((_, i) => Math.cos(i)), [3, 5]);
  const a = layer.lora_A.weight.toFloat32Array();
  const b = layer.lora_B.weight.toFloat32Array();
  const wv = w.toFloat32Array();
  const xv = x.toFloat32Array();
  /** y = x W^T + 2 * ((x * mask) A^T) B^T on the host. */
  const expected = (mask: Float32Array) => {
    const y = new Float32Array(3 * 6);
    for (let n = 0; n < 3; n++) {
      const h = [0, 1].map((k) => [0, 1, 2, 3, 4].reduce((s, i) => s + xv[n * 5 + i]! * mask[n * 5 + i]! * a[k * 5 + i]!, 0));
      for (let o = 0; o < 6; o++) {
        let base = 0;
        for (let i = 0; i < 5; i++) base += xv[n * 5 + i]! * wv[o * 5 + i]!;
        y[n * 6 + o] = base + 2 * (h[0]! * b[o * 2]! + h[1]! * b[o * 2 + 1]!);
      }
    }
    return y;
  };
  // the mask: the step's 64-bit seed drawn at the first call (after A's init), element i dropped when
  // word i % 4 of Philox4x32-10(counter [i / 4, call 0]) under it is below p * 2^32 = 2^31, else scaled by 2
  const twin = Rng.fromState(rng.getState());
  const [k0, k1] = [twin.nextUint32(), twin.nextUint32()];
  const mask = new Float32Array(15).map((_, i) => {
    const c = Uint32Array.of(Math.floor(i / 4), 0, 0, 0);
    philox4x32(c, k0, k1);
    return c[i % 4]! < 2 ** 31 ? 0 : 2;
  });
  layer.train();
  assertClose(layer.forward(x).toFloat32Array(), expected(mask), 1e-5, 'training forward');
  assert.ok(mask.some((m) => m === 0) && mask.some((m) => m === 2));
  layer.eval();
  assertClose(layer.forward(x).toFloat32Array(), expected(new Float32Array(15).fill(1)), 1e-5, 'eval forward');
});

test('merge folds scaling * B @ A into the base: the merged model gives the LoRA logits', async () => {
  const { model } = await fixtureLoraModel();
  const withLora = model.forward(lora.ids).logits.toFloat32Array();
  const merged = mergeLora(model);
  assert.equal(merged.length, 14);
  assert.equal(loraLayers(model).length, 0);
  assert.ok(model.getSubmodule('model.layers.0.self_attn.q_proj') instanceof Linear);
  assertClose(model.forward(lora.ids).logits.toFloat32Array(), withLora, LOGITS_TOL, 'merged logits');
  assert.ok(maxAbsDiff(withLora, (await loadModel(BASE_MODEL)).forward(lora.ids).logits.toFloat32Array()) > 1e-3); // LoRA mattered
});

test('bad LoRA settings and targets are refused with what does not fit', async () => {
  const model = await loadModel(BASE_MODEL);
  const err = (re: RegExp) => (e: unknown) => e instanceof XtunerError && re.test(e.message);
  const cfg = { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: null };
  assert.throws(() => injectLora(model, { ...cfg, r: 0 }), err(/r \(the LoRA rank\) must be a positive integer, got 0/));
  assert.throws(() => injectLora(model, { ...cfg, loraAlpha: -1 }), err(/lora_alpha must be a number >= 0, got -1/));
  assert.throws(() => injectLora(model, { ...cfg, loraDropout: 1 }), err(/lora_dropout must be in \[0, 1\)/));
  assert.throws(() => injectLora(model, { ...cfg, targetModules: ['q_proj', 'qkv_proj'] }), err(/target_modules 'qkv_proj' matches no module/));
  assert.throws(() => injectLora(model, { ...cfg, targetModules: ['embed_tokens'] }), err(/'embed_tokens' names a Embedding \('model\.embed_tokens'\), not a linear layer/));
  assert.throws(() => injectLora(model, { ...cfg, targetModules: '.*\\.nothing' }), err(/matches no linear layer/));
  assert.throws(() => LoRALinear.fromBase(new Linear(tensor(new Float32Array(4), [2, 2])), { r: -2, alpha: 1 }), err(/positive integer, got -2/));
  // nothing was changed by the refused calls
  assert.equal(loraLayers(model).length, 0);
  injectLora(model, { ...cfg, targetModules: ['q_proj'] });
  assert.throws(() => injectLora(model, cfg), err(/already has LoRA layers/));
});

test('LoRA over a bfloat16 model: float32 adapters (PEFT casts), gradients reach them', async () => {
  const model = await loadModel(BASE_MODEL, { dtype: 'bfloat16' });
  injectLora(model, { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: ['q_proj', 'down_proj'] }, new Rng(4));
  for (const [, l] of loraLayers(model)) l.lora_B.weight.assign(new Float32Array(l.lora_B.weight.size).fill(0.01));
  model.train();
  const { logits, loss } = model.forward(lora.ids, { labels: lora.labels });
  assert.equal(logits.dtype, 'bfloat16');
  loss!.backward();
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  assert.equal(trainable.length, 8);
  for (const [name, p] of trainable) {
    assert.equal(p.dtype, 'float32', name);
    assert.equal(p.grad!.dtype, 'float32', name);
    assert.ok(p.grad!.toFloat32Array().some((g) => g !== 0), `${name} got no gradient`);
  }
});
