import test from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/models/index.ts';
import type { CausalLM } from '../../src/models/index.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { clipGradNorm } from '../../src/optim/clip.ts';
import { WarmupCosineSchedule } from '../../src/optim/schedule.ts';
import { injectLora } from '../../src/peft/lora.ts';
import { memoryStats, Rng, tidy } from '../../src/tensor/index.ts';
import { BASE_MODEL, readExpected } from './helpers.ts';

const batch = readExpected('lora');

/** XTuner's recipe on one fixed batch: forward, backward, clip to 1, AdamW at the scheduled lr. */
function train(model: CausalLM, opt: AdamW, sched: WarmupCosineSchedule, iters: number): number[] {
  const params = opt.params.map(([, p]) => p);
  const losses: number[] = [];
  for (let i = 0; i < iters; i++) {
    losses.push(
      tidy(() => {
        const { loss } = model.forward(batch.ids, { labels: batch.labels });
        loss!.backward();
        clipGradNorm(params, 1);
        opt.lr = sched.lr;
        opt.step();
        opt.zeroGrad();
        sched.step();
        return loss!.item();
      }),
    );
  }
  return losses;
}

test('LoRA training lowers the loss on a fixed batch, with memory flat across steps', async () => {
  const model = await loadModel(BASE_MODEL);
  injectLora(model, { r: 8, loraAlpha: 16, loraDropout: 0.05, targetModules: null }, new Rng(0));
  model.train();
  const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  const opt = new AdamW(trainable, { lr: 1e-2, weightDecay: 0 });
  const sched = new WarmupCosineSchedule({ lr: 1e-2, totalIters: 30, warmupIters: 3 });
  const first = train(model, opt, sched, 2);
  const live = memoryStats().liveBytes;
  const losses = [...first, ...train(model, opt, sched, 28)];
  assert.equal(memoryStats().liveBytes, live, 'memory grew between steps');
  const start = losses[0]!;
  const end = losses.at(-1)!;
  assert.ok(end < start - 1, `loss ${start} -> ${end}`);
  model.eval();
  const evalLoss = tidy(() => model.forward(batch.ids, { labels: batch.labels }).loss!.item());
  assert.ok(evalLoss < start - 1, `eval loss ${evalLoss}`);
});

test('full fine-tuning (every weight trainable) lowers the loss too', async () => {
  const model = await loadModel(BASE_MODEL);
  model.train();
  const all = [...model.namedParameters()];
  assert.ok(all.every(([, p]) => p.requiresGrad));
  const opt = new AdamW(all, { lr: 1e-3, weightDecay: 0.01 });
  const sched = new WarmupCosineSchedule({ lr: 1e-3, totalIters: 10, warmupIters: 0 });
  const losses = train(model, opt, sched, 10);
  assert.ok(losses.at(-1)! < losses[0]! - 1, `loss ${losses[0]} -> ${losses.at(-1)}`);
});
