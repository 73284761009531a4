// LoRA over a bf16/f16 layer on CUDA: the fused branch (src/peft/lora-branch.ts) against the CPU
// backend on the same inputs, with dropout (both draw the same Philox mask): output, dx, and the
// float32 adapter gradients at the half-precision tolerance; and what one layer's forward and
// backward launch: the branch's GEMMs in the layer's dtype, the adapter gradients by half x half ->
// float32 GEMMs, no float32 GEMM, no scale or add launch. And `convert merge` with its products on
// the device gives the CPU's merged weights.

import assert from 'node:assert/strict';
import path from 'node:path';
import test from 'node:test';
import { cudaBackend } from '../../src/backends/cuda/index.ts';
import { Linear } from '../../src/nn/index.ts';
import { LoRALinear } from '../../src/peft/lora.ts';
import { DropoutStream, Rng, tensor, tidy, type Device, type FloatDType } from '../../src/tensor/index.ts';
import { CheckpointReader } from '../../src/io/checkpoint.ts';
import { hostToFloat32 } from '../../src/io/safetensors.ts';
import { mergeAdapterToHf } from '../../src/peft/merge.ts';
import { BASE_MODEL, LORA_ADAPTER, tmpDir } from '../peft/helpers.ts';
import { assertClose, SKIP, tolFor, uniform } from './helpers.ts';

// x [2, 33, IN] (66 rows: the dropout's groups of 4 do not divide it), a base with bias (Qwen's q/k/v)
const [BATCH, T, IN, OUT, R] = [2, 33, 72, 40, 8];
const ROWS = BATCH * T;

for (const dtype of ['bfloat16', 'float16'] as FloatDType[]) {
  test(`LoRA ${dtype} on CUDA: the fused branch equals the CPU's, with dropout; launches of one layer`, { skip: SKIP }, () => {
    const data = {
      w: uniform(dtype, OUT * IN, -0.5, 0.5),
      bias: uniform(dtype, OUT),
      a: uniform('float32', R * IN, -0.2, 0.2) as Float32Array,
      b: uniform('float32', OUT * R, -0.2, 0.2) as Float32Array,
      x: uniform(dtype, ROWS * IN),
      dy: uniform(dtype, ROWS * OUT),
    };
    const run = (device: Device) =>
      tidy(() => {
        const base = new Linear(tensor(data.w, [OUT, IN], { dtype, device }), tensor(data.bias, [OUT], { dtype, device }));
        const layer = LoRALinear.withWeights(base, data.a, data.b, { r: R, alpha: 16, dropout: 0.1, rng: new Rng(7), dropoutStream: new DropoutStream(new Rng(7)) });
        layer.train();
        const x = tensor(data.x, [BATCH, T, IN], { dtype, device, requiresGrad: true });
        const dy = tensor(data.dy, [BATCH, T, OUT], { dtype, device });
        if (device === 'cuda') cudaBackend().takeCounters();
        const out = layer.forward(x);
        out.backward(dy);
        const counters = device === 'cuda' ? cudaBackend().takeCounters() : null;
        const [a, b] = [layer.lora_A.weight, layer.lora_B.weight];
        assert.equal(a.grad!.dtype, 'float32');
        const results = { out, dx: x.grad!, dA: a.grad!, dB: b.grad! };
        return { values: Object.fromEntries(Object.entries(results).map(([k, t]) => [k, t.toFloat32Array()])), counters };
      });
    const cpu = run('cpu');
    const gpu = run('cuda');
    for (const [name, want] of Object.entries(cpu.values)) assertClose(gpu.values[name]!, want, tolFor(dtype), `${dtype} ${name}`);

    const k = Object.fromEntries(gpu.counters!.byKernel);
    const s = dtype === 'bfloat16' ? 'bf16' : 'f16';
    // base forward; z and y += scaling z Bc^T; base dx; dz and the branch's dx
    assert.equal(k[`cublas ${dtype}->${dtype}`], 6, 'GEMMs in the layer dtype');
    assert.equal(k[`cublas ${dtype}->float32`], 2, 'dA and dB straight to float32');
    assert.equal(k['cublas float32->float32'], undefined, 'no float32 GEMM');
    assert.equal(gpu.counters!.gemms, 8);
    // A and B cast once; dropout forward, again for dA, and on dx, adding it to the base's dx
    // (no axpy: the gradient is added where it is gathered); the bias copied into y
    assert.deepEqual(
      Object.fromEntries(Object.entries(k).filter(([name]) => !name.startsWith('cublas'))),
      { cast_any: 2, [`dropout_${s}`]: 3, copy_strided_b2: 1 },
    );
  });
}

test('convert merge on CUDA: the same merged weights as on the CPU (the products B A on the device)', { skip: SKIP }, (t) => {
  const dir = tmpDir(t);
  const read = (d: string) => {
    const r = CheckpointReader.open(d);
    try {
      return new Map(r.names().map((n) => [n, hostToFloat32(r.read(n))]));
    } finally {
      r.close();
    }
  };
  mergeAdapterToHf({ baseDir: BASE_MODEL, adapterDir: LORA_ADAPTER, outDir: path.join(dir, 'cpu'), device: 'cpu' });
  cudaBackend().takeCounters();
  mergeAdapterToHf({ baseDir: BASE_MODEL, adapterDir: LORA_ADAPTER, outDir: path.join(dir, 'cuda'), device: 'cuda' });
  assert.equal(cudaBackend().takeCounters().gemms, 14, 'one GEMM per adapted weight, on the device');
  const [cpu, cuda] = [read(path.join(dir, 'cpu')), read(path.join(dir, 'cuda'))];
  assert.deepEqual([...cuda.keys()].sort(), [...cpu.keys()].sort());
  for (const [name, v] of cpu) assertClose(cuda.get(name)!, v, tolFor('float32'), `merged ${name}`);
});
