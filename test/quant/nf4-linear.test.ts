import test from 'node:test';
import assert from 'node:assert/strict';
import { createModel, loadModel } from '../../src/models/index.ts';
import { NF4_MATVEC_MAX_ROWS } from '../../src/backends/index.ts';
import { Embedding, Linear } from '../../src/nn/index.ts';
import { injectLora, loraLayers, mergeLora } from '../../src/peft/lora.ts';
import { NF4Linear, nf4Report, quantizeLinears } from '../../src/quant/nf4-linear.ts';
import { dequantizeNf4, quantizeNf4 } from '../../src/quant/nf4.ts';
import { memoryStats, resetPeakBytes, Rng, tensor, tidy } from '../../src/tensor/index.ts';
import { assertClose, assertCloseRel, BASE_MODEL, GRAD_REL_TOL, LLAMA_TARGETS, LOGITS_TOL, readExpected } from '../peft/helpers.ts';

const batch = readExpected('lora');
/** A matmul of the same numbers in another order: float32 rounding only. */
const SAME_MATH_TOL = 1e-5;

test('NF4Linear computes x W^T + b with the dequantised weight', () => {
  const w = new Float32Array(24 * 70).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
  const bias = tensor(new Float32Array(24).map((_, i) => i / 10), [24]);
  const layer = NF4Linear.fromLinear(new Linear(tensor(w, [24, 70]), bias));
  const deq = dequantizeNf4(quantizeNf4(w));
  assert.deepEqual(layer.dequantizedWeight(), deq);
  // up to NF4_MATVEC_MAX_ROWS rows straight from the 4-bit weight (nf4Matvec), more through a GEMM
  for (const rows of [1, 3, NF4_MATVEC_MAX_ROWS, NF4_MATVEC_MAX_ROWS + 1, 20]) {
    const x = new Float32Array(rows * 70).map((_, i) => Math.cos(i));
    const y = layer.forward(tensor(x, [rows, 70])).toFloat32Array();
    const expected = new Float32Array(rows * 24);
    for (let n = 0; n < rows; n++) {
      for (let o = 0; o < 24; o++) {
        let s = 0;
        for (let i = 0; i < 70; i++) s += x[n * 70 + i]! * deq[o * 70 + i]!;
        expected[n * 24 + o] = s + o / 10;
      }
    }
    assertClose(y, expected, SAME_MATH_TOL, `NF4Linear forward, ${rows} rows`);
    // dx = dy W on either path
    const xt = tensor(x, [rows, 70]);
    xt.requiresGrad = true;
    const dy = new Float32Array(rows * 24).map((_, i) => Math.sin(i * 0.3));
    layer.forward(xt).backward(tensor(dy, [rows, 24]));
    const dx = new Float32Array(rows * 70);
    for (let n = 0; n < rows; n++) for (let o = 0; o < 24; o++) for (let i = 0; i < 70; i++) dx[n * 70 + i]! += dy[n * 24 + o]! * deq[o * 70 + i]!;
    assertClose(xt.grad!.toFloat32Array(), dx, SAME_MATH_TOL, `NF4Linear backward, ${rows} rows`);
  }
  assert.equal([...layer.namedParameters()].length, 1); // only the (frozen) bias is a tensor
  assert.equal(layer.bias!.requiresGrad, false);
});

test('quantizeLinears: every linear but lm_head, about 4.1 bits per weight', async () => {
  const model = await loadModel(BASE_MODEL);
  const report = quantizeLinears(model);
  assert.equal(report.modules.length, 14);
  assert.ok(!report.modules.includes('lm_head'));
  assert.ok(model.getSubmodule('lm_head') instanceof Linear);
  assert.ok(model.getSubmodule('model.layers.1.mlp.down_proj') instanceof NF4Linear);
  const weights = 2 * (64 * 64 * 2 + 32 * 64 * 2 + 176 * 64 * 3);
  assert.equal(report.bytesBefore, weights * 4);
  // 4 bits + 8/64 absmax codes + per 256 blocks a float32 scale, + one offset per tensor
  const bits = (report.bytesAfter * 8) / weights;
  assert.ok(bits > 4.125 && bits < 4.2, `${bits} bits per weight`);
  assert.ok(![...model.namedParameters()].some(([n]) => n.endsWith('q_proj.weight')));
});

test('QLoRA forward and LoRA gradients equal LoRA over the dequantised weights', async () => {
  const qlora = await loadModel(BASE_MODEL);
  quantizeLinears(qlora);
  // the reference: plain Linear layers holding the dequantised weights
  const ref = await loadModel(BASE_MODEL);
  for (const [path, m] of [...qlora.namedModules()]) {
    if (m instanceof NF4Linear) (ref.getSubmodule(path) as Linear).weight.assign(m.dequantizedWeight());
  }
  const cfg = { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: LLAMA_TARGETS };
  const qReport = injectLora(qlora, cfg, new Rng(9));
  const rReport = injectLora(ref, cfg, new Rng(9));
  // a quantised weight counts as its values, as PEFT counts 4-bit weights: the same totals
  assert.deepEqual([qReport.trainableParams, qReport.totalParams], [rReport.trainableParams, rReport.totalParams]);
  // QLoRA casts its adapters per call (memory first); over full-precision layers the copies are kept
  assert.deepEqual(new Set(loraLayers(qlora).map(([, l]) => l.keepCasts)), new Set([false]));
  assert.deepEqual(new Set(loraLayers(ref).map(([, l]) => l.keepCasts)), new Set([true]));
  for (const m of [qlora, ref]) {
    for (const [, l] of loraLayers(m)) l.lora_B.weight.assign(new Float32Array(l.lora_B.weight.size).map((_, i) => Math.cos(i) / 50));
  }
  const q = qlora.forward(batch.ids, { labels: batch.labels });
  const r = ref.forward(batch.ids, { labels: batch.labels });
  assertClose(q.logits.toFloat32Array(), r.logits.toFloat32Array(), LOGITS_TOL, 'logits');
  q.loss!.backward();
  r.loss!.backward();
  const refParams = new Map(ref.namedParameters());
  let n = 0;
  for (const [name, p] of qlora.namedParameters()) {
    if (!p.requiresGrad) continue;
    assertCloseRel(p.grad!.toFloat32Array(), refParams.get(name)!.grad!.toFloat32Array(), GRAD_REL_TOL, name);
    n++;
  }
  assert.equal(n, 28);
});

test('merging QLoRA gives plain Linear layers of dequantised weight + delta, with the same logits', async () => {
  const model = await loadModel(BASE_MODEL);
  quantizeLinears(model);
  injectLora(model, { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: null }, new Rng(2));
  for (const [, l] of loraLayers(model)) l.lora_B.weight.assign(new Float32Array(l.lora_B.weight.size).map((_, i) => Math.sin(i) / 40));
  const before = model.forward(batch.ids).logits.toFloat32Array();
  assert.equal(mergeLora(model).length, 14);
  assert.ok(![...model.namedModules()].some(([, m]) => m instanceof NF4Linear));
  assertClose(model.forward(batch.ids).logits.toFloat32Array(), before, LOGITS_TOL, 'merged QLoRA logits');
});

test('quantising a bfloat16 model: the same codes as quantising its bf16 values, half the bytes before', async () => {
  const model = await loadModel(BASE_MODEL, { dtype: 'bfloat16' });
  const q = (model.getSubmodule('model.layers.0.mlp.up_proj') as Linear).weight.toFloat32Array(); // bf16 values widened
  const report = quantizeLinears(model);
  assert.equal(report.bytesBefore, 2 * (64 * 64 * 2 + 32 * 64 * 2 + 176 * 64 * 3) * 2);
  const layer = model.getSubmodule('model.layers.0.mlp.up_proj') as NF4Linear;
  assert.deepEqual(layer.dequantizedWeight(), dequantizeNf4(quantizeNf4(q)));
  const y = model.forward(batch.ids).logits;
  assert.equal(y.dtype, 'bfloat16');
  assert.ok(y.toFloat32Array().every(Number.isFinite));
});

test('a quantised model keeps ~0.52 byte per quantised weight resident (memoryStats); no dequantised weight outlives its GEMM', async () => {
  const model = await loadModel(BASE_MODEL);
  const before = memoryStats().liveBytes;
  const report = quantizeLinears(model);
  const after = memoryStats().liveBytes;
  // per tensor of n weights: n/2 packed bytes, one absmax code per 64, one float32 scale per 256 codes
  let expected = 0;
  let weights = 0;
  for (const path of report.modules) {
    const m = model.getSubmodule(path) as NF4Linear;
    const n = m.inFeatures * m.outFeatures;
    const blocks = Math.ceil(n / 64);
    expected += Math.ceil(n / 2) + blocks + 4 * Math.ceil(blocks / 256);
    weights += n;
  }
  assert.equal(before - after, report.bytesBefore - expected, 'resident bytes: full weights out, packed form in');
  const perWeight = expected / weights;
  assert.ok(perWeight > 0.515 && perWeight < 0.53, `${perWeight} bytes per weight`);
  // one layer's forward keeps only its output alive (no weight saved for the backward)
  const layer = model.getSubmodule(report.modules[0]!) as NF4Linear;
  const x = tensor(new Float32Array(3 * layer.inFeatures).fill(0.5), [3, layer.inFeatures], { requiresGrad: true });
  const live = memoryStats().liveBytes;
  const y = layer.forward(x);
  assert.equal(memoryStats().liveBytes - live, 4 * y.size);
  y.dispose();
  x.dispose();
  // a step leaves nothing behind (the dequantised weights are temporaries): after a first step
  // (which fills caches such as the rope tables) a second one ends at the same live bytes
  injectLora(model, { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: LLAMA_TARGETS }, new Rng(3));
  const step = (): number => {
    tidy(() => model.forward(batch.ids, { labels: batch.labels }).loss!.backward());
    for (const p of model.parameters()) p.grad = null;
    return memoryStats().liveBytes;
  };
  const first = step();
  assert.equal(step(), first);
});

test('quantising on load: the layers of quantizeLinears after a load, one full-precision weight alive at a time', async () => {
  const after = await loadModel(BASE_MODEL);
  const weightBytes = [...after.namedModules()].filter(([p, m]) => m instanceof Linear && p !== 'lm_head').map(([, m]) => 4 * (m as Linear).weight.size);
  const wantReport = quantizeLinears(after);
  const base = memoryStats().liveBytes;
  resetPeakBytes();
  const onLoad = await loadModel(BASE_MODEL, { quantization: {} });
  const live = memoryStats().liveBytes - base;
  const peak = memoryStats().peakBytes - base;
  assert.deepEqual(nf4Report(onLoad, 'float32'), wantReport);
  for (const path of wantReport.modules) {
    assert.deepEqual((onLoad.getSubmodule(path) as NF4Linear).quantized, (after.getSubmodule(path) as NF4Linear).quantized, path);
  }
  assert.ok(onLoad.getSubmodule('lm_head') instanceof Linear);
  // at most one full weight (and its float32 absmax scratch, the offset) beside what stays
  const largest = Math.max(...weightBytes);
  assert.ok(peak <= live + largest + largest / 64 + 4, `peak ${peak} bytes, ${live} live after, largest weight ${largest}`);
  assert.ok(peak < live + weightBytes.reduce((a, b) => a + b, 0) / 2, 'the full-precision linears never exist together');
  assertClose(onLoad.forward(batch.ids).logits.toFloat32Array(), after.forward(batch.ids).logits.toFloat32Array(), 0, 'logits');
});

test('quantising on load keeps a tied head as it is (the embedding\'s weight)', () => {
  const config = { model_type: 'qwen2', vocab_size: 64, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true };
  const model = createModel(config, { quantization: { skip: () => false } });
  const head = model.getSubmodule('lm_head') as Linear;
  assert.ok(head instanceof Linear);
  assert.equal(head.weight, (model.getSubmodule('model.embed_tokens') as Embedding).weight);
  assert.equal(nf4Report(model, 'float32').modules.length, 7);
});
