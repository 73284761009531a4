// The data commands: the assistant-data generator in-process, then each command file run as the
// CLI runs it (child processes, in parallel: a command prints to stdout, which the test runner
// itself uses in-process) on JSON configs.

import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeAssistantRecords, recordsText } from '../../src/data/assistant-data.ts';
import { checkDataset } from '../../src/data/check.ts';
import { mapRecord } from '../../src/data/formats.ts';
import { fixtureTokenizer, fixtureTokenizerDir } from '../tokenizer/fixture-tokenizers.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-data-cmd-'));
process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

const TSX = import.meta.resolve('tsx');
const RUNNER = path.join(import.meta.dirname, 'run-command.ts');

/** Runs a command module in a child process: what it printed, and its error (stderr) if it threw. */
function run(module: string, argv: string[]): Promise<{ out: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', TSX, RUNNER, `src/cli/commands/${module}.ts`, ...argv], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve(err ? { out: stdout, error: stderr } : { out: stdout }),
    );
  });
}

function config(name: string, extra: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.json`);
  const model = fixtureTokenizerDir('qwen3');
  fs.writeFileSync(file, JSON.stringify({ pretrained_model_name_or_path: model, prompt_template: 'internlm2_chat', ...extra }));
  return file;
}

test('assistant data: N OpenAI records, the tutorial’s question and answer first, paraphrases after; a clean dataset', async () => {
  const records = makeAssistantRecords('小明', 30);
  assert.equal(records.length, 30);
  assert.deepEqual(records[0], {
    messages: [
      { role: 'user', content: '请做一下自我介绍' },
      { role: 'assistant', content: '我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦' },
    ],
  });
  assert.ok(new Set(records.map((r) => r.messages[0].content)).size >= 8);
  assert.ok(new Set(records.map((r) => r.messages[1].content)).size >= 3);
  for (const r of records) {
    assert.ok(r.messages[1].content.includes('小明'));
    assert.equal(mapRecord('openai', r).length, 1);
  }
  assert.deepEqual(makeAssistantRecords('小明', 30), records);
  assert.throws(() => makeAssistantRecords('', 3), /--name must not be empty/);
  assert.throws(() => makeAssistantRecords('x', 0), /--n must be a positive integer/);

  const file = path.join(dir, 'assistant.jsonl');
  fs.writeFileSync(file, recordsText(file, records));
  const cfg = { data_path: file, dataset_format: 'openai', prompt_template: 'internlm2_chat', max_length: 128, pack_to_max_length: true, shuffle_before_pack: true, seed: 0, batch_size: 1 };
  const report = await checkDataset(cfg, await fixtureTokenizer('qwen3'));
  assert.deepEqual(report.problems, []);
  assert.equal(report.stats.samples, 30);
  assert.equal(JSON.parse(recordsText('x.json', records.slice(0, 2))).length, 2);
});

test('the commands, as the CLI runs them', async () => {
  const out = path.join(dir, 'data', 'assistant.jsonl');
  const bad = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(
    bad,
    [
      JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] }),
      JSON.stringify({ messages: [{ role: 'user', content: 'q' }, { role: 'bot', content: 'a' }] }),
      '{oops',
    ].join('\n'),
  );
  const good = path.join(dir, 'good.jsonl');
  fs.writeFileSync(good, fs.readFileSync(bad, 'utf8').split('\n')[0] + '\n');
  const badCfg = config('bad', { data_path: bad, dataset_format: 'openai', max_length: 32 });
  const goodCfg = config('good', { data_path: good, dataset_format: 'openai', max_length: 32 });
  const [made, noName, checked, logged, badShow] = await Promise.all([
    run('make-assistant-data', ['--name', 'Ada', '--n', '50', '--out', out]),
    run('make-assistant-data', ['--n', '3']),
    run('check-custom-dataset', [badCfg]),
    run('log-dataset', [goodCfg, '--show', 'all', '--cfg-options', 'pack_to_max_length=false']),
    run('log-dataset', [goodCfg, '--show', 'everything']),
  ]);

  assert.equal(made.error, undefined);
  assert.match(made.out, /^Wrote 50 samples to /);
  const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
  assert.equal(lines.length, 50);
  assert.equal(JSON.parse(lines[0]!).messages[1].content, '我是Ada的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦');
  assert.match(noName.error ?? '', /^UsageError: make-assistant-data: missing --name NAME/);

  // every problem listed, then a failure
  assert.match(checked.error ?? '', /^XtunerError: the dataset has 2 problem\(s\), listed above/);
  assert.ok(checked.out.startsWith('Checked 1 file, 2 records (dataset_format openai, prompt_template internlm2_chat, max_length 32)\n2 problems:\n'));
  assert.ok(checked.out.includes(`  ${bad}:2: messages[1].role: unknown role 'bot' (expected system, user or assistant)\n`));
  assert.match(checked.out, new RegExp(`  ${bad}:3: malformed JSON`));

  // log-dataset: the one good sample (unpacked: no padding)
  assert.equal(logged.error, undefined);
  assert.ok(logged.out.startsWith(`${'#'.repeat(20)}   text   ${'#'.repeat(20)}\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n\n`));
  assert.match(logged.out, /   text\(masked\)   #+\n(\[-100\] )+Hello<\|im_end\|>\n/);
  assert.match(logged.out, /   labels   #+\n\[(-100, )+\d+, 151645, -100\]\n$/);
  assert.match(badShow.error ?? '', /--show must be one of text, masked_text, input_ids, labels, all, got 'everything'/);
});
