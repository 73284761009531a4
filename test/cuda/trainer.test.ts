// `xtuner train` on CUDA (bf16, LoRA with dropout, gradient accumulation, packed rows): with CUDA
// graphs (the default) the losses and the saved adapter equal those of the same run op by op
// (XTUNER_CUDA_GRAPHS=0) bit for bit, and a run interrupted between two optimizer steps resumes
// to the same losses (the checkpoint holds the accumulated gradients, which the graphs write in
// place).

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateConfig, type XtunerConfig } from '../../src/config/index.ts';
import { makeAssistantRecords, recordsText } from '../../src/data/index.ts';
import { InterruptFlag } from '../../src/train/interrupt.ts';
import { train } from '../../src/train/trainer.ts';
import { buildTinyAssistant } from '../../examples/tiny-assistant/build-model.ts';
import { TINY_LLAMA } from '../train/tiny-llama.ts';
import { SKIP } from './helpers.ts';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-cuda-trainer-'));
const MODEL = buildTinyAssistant(path.join(ROOT, 'model'), 0, TINY_LLAMA);
const DATA = path.join(ROOT, 'data.jsonl');
fs.writeFileSync(DATA, recordsText(DATA, makeAssistantRecords('tester', 40)));
const quiet = { write: () => true, isTTY: false };

function config(): XtunerConfig {
  return validateConfig(
    {
      pretrained_model_name_or_path: MODEL,
      data_path: DATA,
      dataset_format: 'openai',
      prompt_template: 'internlm2_chat',
      max_length: 128,
      batch_size: 2,
      accumulative_counts: 2,
      max_iters: 8,
      lr: 1e-3,
      warmup_ratio: 0.25,
      save_steps: 100,
      evaluation_inputs: [],
      log_interval: 1,
      lora: { r: 4, lora_alpha: 8, lora_dropout: 0.1 },
      device: 'cuda',
      dtype: 'bfloat16',
    },
    'test config',
  );
}

async function run(name: string, graphs: boolean, opts: { stopAt?: number; resume?: string } = {}) {
  const before = process.env['XTUNER_CUDA_GRAPHS'];
  if (graphs) delete process.env['XTUNER_CUDA_GRAPHS'];
  else process.env['XTUNER_CUDA_GRAPHS'] = '0';
  const losses: number[] = [];
  const interrupt = new InterruptFlag();
  const workDir = path.join(ROOT, name);
  try {
    const result = await train({
      config: config(),
      workDir,
      resume: opts.resume ?? null,
      out: quiet,
      interrupt,
      onIteration: ({ iter, loss }) => {
        losses.push(loss);
        if (iter === opts.stopAt) interrupt.requested = true;
      },
    });
    return { result, losses, workDir };
  } finally {
    if (before === undefined) delete process.env['XTUNER_CUDA_GRAPHS'];
    else process.env['XTUNER_CUDA_GRAPHS'] = before;
  }
}

const adapterOf = (r: { result: { checkpoint: string | null } }): Buffer => fs.readFileSync(path.join(r.result.checkpoint!, 'trainable.safetensors'));

test('xtuner train on CUDA: graphs give the op-by-op losses and weights; a resume between optimizer steps continues exactly', { skip: SKIP }, async () => {
  const eager = await run('eager', false);
  const graphed = await run('graphed', true);
  assert.equal(graphed.losses.length, 8);
  assert.deepEqual(graphed.losses, eager.losses);
  assert.ok(adapterOf(graphed).equals(adapterOf(eager)), 'the saved adapter weights');
  const first = await run('resumed', true, { stopAt: 3 }); // iteration 3 of an accumulation of 2: gradients pending
  assert.equal(first.result.status, 'interrupted');
  const second = await run('resumed', true, { resume: 'auto' });
  assert.deepEqual([...first.losses, ...second.losses], graphed.losses);
  assert.ok(adapterOf(second).equals(adapterOf(graphed)));
  fs.rmSync(ROOT, { recursive: true, force: true });
});
