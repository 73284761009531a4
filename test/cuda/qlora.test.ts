// QLoRA on CUDA: the NF4 weights are made on the device (quantised as the model loads: nothing
// weight-sized crosses back to the host) and stay packed there (nothing weight-sized crosses from
// the host per step); the codes, the forward and the LoRA gradients equal the CPU backend's; over
// a bf16 model, with the fused LoRA branch and dropout too.

import assert from 'node:assert/strict';
import test from 'node:test';
import { cudaBackend } from '../../src/backends/cuda/index.ts';
import { loadModel } from '../../src/models/index.ts';
import { injectLora, loraLayers } from '../../src/peft/lora.ts';
import { NF4Linear, nf4Report, quantizeLinears } from '../../src/quant/nf4-linear.ts';
import { DropoutStream, Rng, tidy, type Device, type FloatDType } from '../../src/tensor/index.ts';
import { BASE_MODEL, GRAD_REL_TOL, LLAMA_TARGETS, LOGITS_TOL, assertClose, assertCloseRel, readExpected } from '../peft/helpers.ts';
import { SKIP } from './helpers.ts';

const batch = readExpected('lora');

async function qlora(device: Device, dtype: FloatDType = 'float32', loraDropout = 0) {
  const model = await loadModel(BASE_MODEL, { device, dtype });
  quantizeLinears(model);
  injectLora(model, { r: 4, loraAlpha: 8, loraDropout, targetModules: LLAMA_TARGETS }, new Rng(9), new DropoutStream(new Rng(9)));
  for (const [, l] of loraLayers(model)) l.lora_B.weight.assign(new Float32Array(l.lora_B.weight.size).map((_, i) => Math.cos(i) / 50));
  return model;
}

/** Logits of one forward of the batch, after its backward has filled the LoRA grads. */
function forwardBackward(model: Awaited<ReturnType<typeof qlora>>): Float32Array {
  return tidy(() => {
    const { logits, loss } = model.forward(batch.ids, { labels: batch.labels });
    loss!.backward();
    return logits.toFloat32Array();
  });
}

test('QLoRA on CUDA: packed weights stay on the device, logits and LoRA grads equal the CPU', { skip: SKIP }, async () => {
  const cpu = await qlora('cpu');
  const gpu = await qlora('cuda');
  let quantWeights = 0;
  for (const [, m] of gpu.namedModules()) if (m instanceof NF4Linear) quantWeights += m.inFeatures * m.outFeatures;
  const want = forwardBackward(cpu);
  cudaBackend().takeCounters();
  const got = forwardBackward(gpu);
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

/**
 * A bf16 model on two backends: each layer's bf16 roundings agree to 1 ulp (layers.test.ts,
 * lora.test.ts), but a rounding flipped early in the 2-layer model moves what follows by about
 * 2^-8 of the values' scale. Relative to each tensor's max (emulator: logits 9e-5, LoRA grads up to
 * 3.5e-3); 2^-5 leaves room for a GPU's other summation orders.
 */
const BF16_MODEL_TOL = 2 ** -5;

test('QLoRA on a bf16 model on CUDA: the fused LoRA branch with dropout, no float32 GEMM, logits and LoRA grads as the CPU', { skip: SKIP }, async () => {
  const cpu = await qlora('cpu', 'bfloat16', 0.1);
  const gpu = await qlora('cuda', 'bfloat16', 0.1);
  cpu.train();
  gpu.train();
  const want = forwardBackward(cpu);
  cudaBackend().takeCounters();
  const got = forwardBackward(gpu);
  const c = cudaBackend().takeCounters();
  assert.equal(c.byKernel.get('cublas float32->float32'), undefined, 'no float32 GEMM');
  assert.equal(c.byKernel.get('cublas bfloat16->float32'), 2 * 14, 'dA and dB of 14 LoRA layers, float32 out');
  assert.equal(c.byKernel.get('nf4_dequantize_bf16'), 14 + 11);
  assertCloseRel(got, want, BF16_MODEL_TOL, 'logits');
  const ref = new Map(cpu.namedParameters());
  let n = 0;
  for (const [name, p] of gpu.namedParameters()) {
    if (!p.requiresGrad) continue;
    assert.equal(p.grad!.dtype, 'float32', name);
    assertCloseRel(p.grad!.toFloat32Array(), ref.get(name)!.grad!.toFloat32Array(), BF16_MODEL_TOL, name);
    n++;
  }
  assert.equal(n, 28);
});

test('quantising on load on CUDA: the CPU bytes, quantised on the device (4 bytes read back per layer)', { skip: SKIP }, async () => {
  const cpu = await loadModel(BASE_MODEL, { quantization: {} });
  cudaBackend().takeCounters();
  const gpu = await loadModel(BASE_MODEL, { device: 'cuda', quantization: {} });
  const c = cudaBackend().takeCounters();
  const modules = nf4Report(gpu, 'float32').modules;
  assert.equal(modules.length, 14);
  assert.equal(c.byKernel.get('nf4_quantize_f32'), 14);
  assert.equal(c.byKernel.get('nf4_absmax_mean'), 14);
  assert.equal(c.byKernel.get('nf4_absmax_codes'), 14);
  assert.equal(c.dtohBytes, 4 * 14, 'only the offsets of the double quantisation come back');
  for (const path of modules) {
    assert.deepEqual((gpu.getSubmodule(path) as NF4Linear).quantized, (cpu.getSubmodule(path) as NF4Linear).quantized, path);
  }
});
