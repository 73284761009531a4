// The trainer tests' fixture: the fixture-sized tiny-assistant model (TINY_LLAMA), 40 self-cognition
// samples, a config of XTuner's shape with small numbers (overridable), and a run helper that
// records each iteration's loss and can interrupt after one, as Ctrl-C does.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateConfig, type XtunerConfig } from '../../src/config/index.ts';
import { makeAssistantRecords, recordsText } from '../../src/data/index.ts';
import { InterruptFlag } from '../../src/train/interrupt.ts';
import { train } from '../../src/train/trainer.ts';
import { buildTinyAssistant } from '../../examples/tiny-assistant/build-model.ts';
import { TINY_LLAMA } from './tiny-llama.ts';

export const quiet = { write: () => true, isTTY: false };

export function trainerFixture(prefix: string) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const model = buildTinyAssistant(path.join(root, 'model'), 0, TINY_LLAMA);
  const data = path.join(root, 'data.jsonl');
  fs.writeFileSync(data, recordsText(data, makeAssistantRecords('tester', 40)));

  function config(overrides: Record<string, unknown> = {}): XtunerConfig {
    return validateConfig(
      {
        pretrained_model_name_or_path: model,
        data_path: data,
        dataset_format: 'openai',
        prompt_template: 'internlm2_chat',
        max_length: 128,
        batch_size: 2,
        accumulative_counts: 2,
        max_iters: 8,
        lr: 1e-3,
        warmup_ratio: 0.25,
        save_steps: 100,
        save_total_limit: 2,
        evaluation_inputs: [],
        log_interval: 1,
        lora: { r: 4, lora_alpha: 8, lora_dropout: 0.1 },
        device: 'cpu',
        ...overrides,
      },
      'test config',
    );
  }

  const workDir = (name: string): string => path.join(root, name);

  /** Trains, recording each iteration's loss; interrupts (as Ctrl-C does) after iteration `stopAt`. */
  async function run(cfg: XtunerConfig, dir: string, opts: { stopAt?: number; resume?: string } = {}) {
    const losses: number[] = [];
    const interrupt = new InterruptFlag();
    const result = await train({
      config: cfg,
      workDir: dir,
      resume: opts.resume ?? null,
      out: quiet,
      interrupt,
      onIteration: ({ iter, loss }) => {
        losses.push(loss);
        if (iter === opts.stopAt) interrupt.requested = true;
      },
    });
    return { result, losses };
  }

  return { root, model, data, config, workDir, run };
}
