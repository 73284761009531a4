// XTuner's tutorial path through the real CLI, on the tiny-assistant model (random weights):
// list-cfg, make-assistant-data, copy-cfg, train (the loss falls, checkpoints and eval-chat
// answers appear), convert pth_to_hf, merge, chat (the greedy answer is the trained one).

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeAssistantRecords } from '../../src/data/index.ts';
import { readLogs, scratchWithTinyModel, xtuner } from './cli.ts';

const CONFIG = 'tiny_llama_lora_self_cognition_e1';
const NAME = 'e2e';
/** What the model is trained to answer (any of the data's Chinese answers). */
const ANSWERS = new Set(makeAssistantRecords(NAME, 30).map((r) => r.messages[1].content));

function ok(r: ReturnType<typeof xtuner>, what: string): string {
  assert.equal(r.status, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('the tutorial, end to end through the CLI', async () => {
  const dir = scratchWithTinyModel('xtuner-tutorial-');

  assert.match(ok(xtuner(dir, 'list-cfg', '-p', 'self_cognition'), 'list-cfg'), new RegExp(`^${CONFIG}$`, 'm'));
  ok(xtuner(dir, 'make-assistant-data', '--name', NAME, '--n', '500'), 'make-assistant-data');
  ok(xtuner(dir, 'copy-cfg', CONFIG, '.'), 'copy-cfg');
  const copy = `${CONFIG}_copy.ts`;
  assert.ok(fs.existsSync(path.join(dir, copy)));

  const out = ok(xtuner(dir, 'train', copy), 'train');
  const work = path.join(dir, 'work_dirs', `${CONFIG}_copy`);
  assert.match(out, /Iter\(train\) \[100\/100\]/);

  // The loss falls from chance level (ln 2000 = 7.6, more for a random model) to well below 1.
  const logs = readLogs(work);
  assert.deepEqual(logs.map((l) => l.iter), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
  assert.ok(logs[0]!.loss > 5, `first logged loss ${logs[0]!.loss}`);
  assert.ok(logs.at(-1)!.loss < 1, `last logged loss ${logs.at(-1)!.loss}`);

  // Work folder: resolved config, checkpoints, last_checkpoint, eval-chat answers before/during/after.
  assert.equal(JSON.parse(fs.readFileSync(path.join(work, 'config.resolved.json'), 'utf8')).max_iters, 100);
  assert.deepEqual(fs.readdirSync(work).filter((f) => f.startsWith('iter_')).sort(), ['iter_100', 'iter_50']);
  assert.equal(fs.readFileSync(path.join(work, 'last_checkpoint'), 'utf8').trim(), 'iter_100');
  assert.deepEqual(fs.readdirSync(path.join(work, 'eval_chat')).sort(), ['iter_0.json', 'iter_100.json', 'iter_50.json']);
  const evalAfter = JSON.parse(fs.readFileSync(path.join(work, 'eval_chat', 'iter_100.json'), 'utf8'));
  assert.ok(ANSWERS.has(evalAfter.samples[0].output), `eval-chat after training: ${evalAfter.samples[0].output}`);

  ok(xtuner(dir, 'convert', 'pth_to_hf', copy, path.join(work, 'iter_100'), 'adapter'), 'convert pth_to_hf');
  const adapterConfig = JSON.parse(fs.readFileSync(path.join(dir, 'adapter', 'adapter_config.json'), 'utf8'));
  assert.equal(adapterConfig.peft_type, 'LORA');
  assert.equal(adapterConfig.r, 16);
  assert.ok(fs.existsSync(path.join(dir, 'adapter', 'adapter_model.safetensors')));

  ok(xtuner(dir, 'convert', 'merge', 'examples/tiny-assistant', 'adapter', 'merged', '--max-shard-size', '2GB', '--safe-serialization'), 'convert merge');
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.model', 'tokenizer_config.json']) assert.ok(fs.existsSync(path.join(dir, 'merged', f)), f);

  const ask = ['--prompt-template', 'internlm2_chat', '--temperature', '0', '--prompt', '请做一下自我介绍'];
  const merged = ok(xtuner(dir, 'chat', 'merged', ...ask), 'chat merged').trim();
  assert.ok(ANSWERS.has(merged), `merged model answered: ${merged}`);
  assert.equal(merged, evalAfter.samples[0].output);
  const withAdapter = ok(xtuner(dir, 'chat', 'examples/tiny-assistant', '--adapter', 'adapter', ...ask), 'chat --adapter').trim();
  assert.equal(withAdapter, merged);
  // the base in NF4 (--bits 4, as one chats on a small card): the trained answer survives 4 bits
  const run4 = xtuner(dir, 'chat', 'examples/tiny-assistant', '--adapter', 'adapter', '--bits', '4', ...ask);
  const in4Bits = ok(run4, 'chat --bits 4').trim();
  assert.match(run4.stderr, /^14 linear layers in NF4: [0-9.]+ MiB \([0-9.]+ MiB in float32\)$/m);
  assert.ok(ANSWERS.has(in4Bits), `with the base in 4 bits: ${in4Bits}`);
  const untrained = ok(xtuner(dir, 'chat', 'examples/tiny-assistant', ...ask, '--max-new-tokens', '40'), 'chat base').trim();
  assert.ok(!ANSWERS.has(untrained), 'the base model does not know the answer');
});
