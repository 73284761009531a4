// QLoRA on CUDA: the NF4 weights stay packed on the device (nothing weight-sized crosses from the
// host per step) and the forward and LoRA gradients equal the same model on the CPU backend.

import assert from 'node:assert/strict';
import test from 'node:test';
import { cudaBackend } from '../../src/backends/cuda/index.ts';
import { loadModel } from '../../src/models/index.ts';
import { injectLora, loraLayers } from '../../src/peft/lora.ts';
import { NF4Linear, quantizeLinears } from '../../src/quant/nf4-linear.ts';
import { Rng, tidy, type Device } from '../../src/tensor/index.ts';
import { BASE_MODEL, GRAD_REL_TOL, LLAMA_TARGETS, LOGITS_TOL, assertClose, assertCloseRel, readExpected } from '../peft/helpers.ts';
import { SKIP } from './helpers.ts';

const batch = readExpected('lora');

async function qlora(device: Device) {
  const model = await loadModel(BASE_MODEL, { device });
  quantizeLinears(model);
  injectLora(model, { r: 4, loraAlpha: 8, loraDropout: 0, targetModules: LLAMA_TARGETS }, new Rng(9));
  for (const [, l] of loraLayers(model)) l.lora_B.weight.assign(new Float32Array(l.lora_B.weight.size).map((_, i) => Math.cos(i) / 50));
  return model;
}

test('QLoRA on CUDA: packed weights stay on the device, logits and LoRA grads equal the CPU', { skip: SKIP }, async () => {
  const cpu = await qlora('cpu');
  const gpu = await qlora('cuda');
  let quantWeights = 0;
  for (const [, m] of gpu.namedModules()) if (m instanceof NF4Linear) quantWeights += m.inFeatures * m.outFeatures;
  const run = (model: typeof cpu) =>
    tidy(() => {
      const { logits, loss } = model.forward(batch.ids, { labels: batch.labels });
      loss!.backward();
      return logits.toFloat32Array();
    });
  const want = run(cpu);
  cudaBackend().takeCounters();
  const got = run(gpu);
  const c = cudaBackend().takeCounters();
  assert.ok(c.htodBytes < quantWeights / 4, `${c.htodBytes} bytes uploaded in a step (${quantWeights} quantised weights)`);
  // 14 forwards, 11 backwards: layer 0's q/k/v read the frozen embedding's output, so need no dx
  assert.equal(c.byKernel.get('nf4_dequantize_f32'), 14 + 11, 'dequantised in the forward and again in the backward');
  assertClose(got, want, LOGITS_TOL, 'logits');
  const ref = new Map(cpu.namedParameters());
  let n = 0;
  for (const [name, p] of gpu.namedParameters()) {
    if (!p.requiresGrad) continue;
    assertCloseRel(p.grad!.toFloat32Array(), ref.get(name)!.grad!.toFloat32Array(), GRAD_REL_TOL, name);
    n++;
  }
  assert.equal(n, 28);
});
