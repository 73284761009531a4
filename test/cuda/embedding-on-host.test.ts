// The embedding table in host memory (LoadOptions.embeddingOnHost, as QLoRA trains): a forward
// gathers its rows on the host and uploads them into a persistent buffer before any kernel, so the
// numbers are those of the table on the device, bit for bit: training iterations op by op, captured
// and replayed as CUDA graphs (the graph reads the rows where the capture found them), and greedy
// decoding with the KV cache (fresh uploads per token). A head tied to the table keeps it on the
// device.

import assert from 'node:assert/strict';
import test from 'node:test';
import { createModel } from '../../src/models/index.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { injectLora } from '../../src/peft/lora.ts';
import { DropoutStream, Rng } from '../../src/tensor/index.ts';
import { TrainStep, type StepBatch } from '../../src/train/step.ts';
import { SKIP } from './helpers.ts';

const SHAPE = { model_type: 'llama', vocab_size: 320, hidden_size: 128, intermediate_size: 192, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };
const T = 64;

function setup(embeddingOnHost: boolean) {
  const model = createModel(SHAPE, { device: 'cuda', dtype: 'bfloat16', seed: 3, embeddingOnHost });
  const rng = new Rng(1);
  const dropout = new DropoutStream(rng);
  injectLora(model, { r: 8, loraAlpha: 16, loraDropout: 0.1, targetModules: null }, rng, dropout);
  model.setGradientCheckpointing(true, [dropout]);
  model.train();
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  const optimizer = new AdamW(trainable, { lr: 1e-2 });
  return { model, trainable, optimizer, step: new TrainStep({ model, optimizer, maxNorm: 1, dropout, graphs: true }) };
}

function batchOf(i: number): StepBatch {
  const rng = new Rng(100 + i);
  const ids = Array.from({ length: T }, () => rng.int(SHAPE.vocab_size));
  const cu = [0, 20, 45, T];
  const positions = ids.map((_, t) => t - cu[cu.findLastIndex((c) => c <= t)]!);
  return { inputIds: [ids], labels: [ids.map((id, t) => (cu.includes(t) ? -100 : id))], positionIds: [positions], cuSeqlens: cu };
}

test('the embedding table in host memory: training through CUDA graphs and decoding give the on-device numbers, bit for bit', { skip: SKIP }, () => {
  const onDevice = setup(false);
  const onHost = setup(true);
  assert.equal(onDevice.model.embeddingOnHost, false);
  assert.equal(onHost.model.embeddingOnHost, true);
  assert.equal(onHost.model.getSubmodule('model.embed_tokens').parameters().next().value!.device, 'cpu');
  // the two runs interleaved: each captures while the other's optimizer tables are the backend's latest
  const kind = { lossFactor: 1, optimizerStep: true, lr: 1e-2 };
  for (let i = 0; i < 5; i++) {
    const want = onDevice.step.run(batchOf(i), kind);
    assert.deepEqual(onHost.step.run(batchOf(i), kind), want, `iteration ${i}`);
  }
  // op by op, captured, then replayed
  assert.deepEqual(onHost.step.counts, { eager: 1, captured: 1, replayed: 3 });
  for (const [k, [name, p]] of onHost.trainable.entries()) assert.deepEqual(p.toHostArray(), onDevice.trainable[k]![1].toHostArray(), name);
  for (const r of [onDevice, onHost]) r.model.eval();
  const prompt = [5, 17, 230, 9];
  assert.deepEqual(onHost.model.generate(prompt, { maxNewTokens: 8, stopIds: [] }), onDevice.model.generate(prompt, { maxNewTokens: 8, stopIds: [] }));
  for (const r of [onDevice, onHost]) {
    r.step.dispose();
    r.optimizer.dispose();
  }
});

test('the embedding table stays on the device when the head is tied to it', { skip: SKIP }, () => {
  const model = createModel({ ...SHAPE, tie_word_embeddings: true }, { device: 'cuda', dtype: 'bfloat16', embeddingOnHost: true });
  assert.equal(model.embeddingOnHost, false);
});
