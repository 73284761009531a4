// A LoRA training step of a bf16 model on CUDA, as the trainer runs it (the chunked loss, the
// clip coefficient and AdamW on the device, one read of loss + norm at the end), against the CPU
// backend: no host read or wait before that one read (the embedding's ids are checked on the host,
// the cross-entropy backward multiplies by dy on the device), and the adapters cast to bf16 once
// (the first forward): from then on the AdamW step refreshes the cached copies in its own kernel,
// bit for bit the cast of the new weights.

import assert from 'node:assert/strict';
import test from 'node:test';
import { cudaBackend } from '../../src/backends/cuda/index.ts';
import { loadModel } from '../../src/models/index.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { clipCoefficient } from '../../src/optim/clip.ts';
import { injectLora, loraLayers } from '../../src/peft/lora.ts';
import { DropoutStream, Rng, cast, castCopy, readScalars, tidy, type Device } from '../../src/tensor/index.ts';
import { BASE_MODEL, LLAMA_TARGETS, readExpected } from '../peft/helpers.ts';
import { SKIP } from './helpers.ts';

const batch = readExpected('lora');
const LAYERS = 14; // LoRA linears of the fixture model (2 decoder layers x 7)
const ATTENTION_CASTS = 2 * 2; // dk and dv of the version 1 attention backward, 2 decoder layers
/** Relative to the value: two backends' bf16 roundings drift apart through the model (qlora.test.ts: BF16_MODEL_TOL). */
const BF16_STEP_TOL = 2 ** -5;

async function setup(device: Device) {
  const model = await loadModel(BASE_MODEL, { device, dtype: 'bfloat16' });
  injectLora(model, { r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: LLAMA_TARGETS }, new Rng(9), new DropoutStream(new Rng(9)));
  for (const [, l] of loraLayers(model)) l.lora_B.weight.assign(new Float32Array(l.lora_B.weight.size).map((_, i) => Math.cos(i) / 50));
  model.train();
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  return { model, trainable, opt: new AdamW(trainable, { lr: 1e-3 }) };
}

test('a bf16 LoRA step on CUDA: one read-back, adapters cast once, losses and norms as the CPU', { skip: SKIP }, async () => {
  const tokens = batch.ids.length * batch.ids[0]!.length;
  const rows = Math.ceil(tokens / 3); // three loss chunks: three cross-entropy backwards with dy != 1
  const runs = { cpu: await setup('cpu'), cuda: await setup('cuda') };
  const be = cudaBackend();
  const results: Record<string, number[][]> = { cpu: [], cuda: [] };
  for (const device of ['cpu', 'cuda'] as const) {
    const { model, trainable, opt } = runs[device];
    for (let step = 1; step <= 3; step++) {
      if (device === 'cuda') be.takeCounters();
      const values = tidy(() => {
        const { loss } = model.forward(batch.ids, { labels: batch.labels, logits: false, lossChunkRows: rows });
        loss.backward();
        const clip = clipCoefficient(trainable.map(([, p]) => p), 1);
        opt.step(clip.coef);
        opt.zeroGrad();
        return readScalars([loss, clip.norm]);
      });
      results[device]!.push(values);
      if (device !== 'cuda') continue;
      const c = be.takeCounters();
      assert.equal(c.dtoh, 1, `step ${step}: one read-back (loss and norm together)`);
      assert.equal(c.syncs, 1, `step ${step}: one host wait`);
      // step 1 fills the cache (A and B of each layer); then AdamW keeps it in step: no cast launch
      // for the adapters (the others: the SIMT attention backward casts its float32 dk and dv, the
      // fixture's head dim having no tensor-core kernel)
      const casts = c.byKernel.get('cast_any') ?? 0;
      assert.equal(casts, (step === 1 ? 2 * LAYERS : 0) + ATTENTION_CASTS, `step ${step}: casts`);
    }
  }
  for (let i = 0; i < 3; i++) {
    for (const [k, name] of ['loss', 'grad norm'].entries()) {
      const [want, got] = [results['cpu']![i]![k]!, results['cuda']![i]![k]!];
      assert.ok(Math.abs(got - want) <= BF16_STEP_TOL * Math.abs(want), `step ${i + 1} ${name}: cuda ${got} vs cpu ${want}`);
    }
  }
  // the copies AdamW refreshed are the cast of the new float32 adapters, bit for bit
  for (const [name, l] of loraLayers(runs.cuda.model)) {
    for (const w of [l.lora_A.weight, l.lora_B.weight]) {
      tidy(() => assert.deepEqual(castCopy(w, 'bfloat16').toHostArray(), cast(w, 'bfloat16').toHostArray(), name));
    }
  }
  for (const r of Object.values(runs)) r.opt.dispose();
});
