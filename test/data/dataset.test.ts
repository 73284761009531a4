// A dataset of files with good and bad records, end to end: strict loading stops at the first bad
// record with its file, line and field; checking lists every problem and counts what is dropped
// and truncated; packing is deterministic for a seed and keeps every token.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { buildTrainData, encodeDataset, type DataConfig } from '../../src/data/dataset.ts';
import { checkDataset, formatCheckReport, formatLogItem } from '../../src/data/check.ts';
import { fixtureTokenizer } from '../tokenizer/fixture-tokenizers.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-dataset-'));
process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const long = 'word '.repeat(200);
const alpaca = path.join(dir, 'alpaca.jsonl');
fs.writeFileSync(
  alpaca,
  [
    JSON.stringify({ instruction: 'Say hi.', input: '', output: 'Hi!' }),
    JSON.stringify({ instruction: 'Add.', input: '1 2', output: '3' }),
    JSON.stringify({ instruction: 'x', input: '', output: '<nooutput>' }),
    JSON.stringify({ instruction: 'Echo.', input: '', output: long }), // cut to max_length, kept
    JSON.stringify({ instruction: 'y', input: '' }), // line 5: no output
    '{"instruction": ', // line 6: malformed
    JSON.stringify({ instruction: long, input: '', output: 'z' }), // the cut leaves no answer: dropped
    JSON.stringify({ messages: [{ role: 'user', content: 'q' }] }), // line 8: not alpaca
  ].join('\n') + '\n',
);
const empty = path.join(dir, 'empty.jsonl');
fs.writeFileSync(empty, '');

const cfg: DataConfig = {
  data_path: [alpaca, empty],
  dataset_format: 'alpaca',
  prompt_template: 'internlm2_chat',
  max_length: 64,
  pack_to_max_length: true,
  shuffle_before_pack: true,
  seed: 0,
  batch_size: 1,
};

test('strict loading stops at the first bad record: file, line and field named', async () => {
  const tok = await fixtureTokenizer('qwen3');
  await assert.rejects(
    encodeDataset(cfg, tok),
    (e: unknown) => e instanceof XtunerError && e.message === `${alpaca}:5: output: missing (a string is required)`,
  );
});

test('checking lists every problem and counts dropped and truncated samples', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const report = await checkDataset(cfg, tok);
  assert.deepEqual(
    report.problems.map((p) => [p.file, p.line, p.field]),
    [
      [alpaca, 5, 'output'],
      [alpaca, 6, undefined],
      [alpaca, 8, 'instruction'],
      [empty, undefined, undefined],
    ],
  );
  assert.match(report.problems[1]!.message, /^malformed JSON/);
  assert.equal(report.problems[3]!.message, 'empty file (no records)');
  const s = report.stats;
  assert.deepEqual(
    [s.records, s.samples, s.droppedEmpty, s.droppedNoLabel, s.truncated],
    [7, 3, 1, 1, 1],
  );
  assert.ok(s.longest > 200 && s.truncatedTokens === s.longest - 64);
  const text = formatCheckReport(cfg, report);
  assert.match(text, /^Checked 2 files, 7 records \(dataset_format alpaca, prompt_template internlm2_chat, max_length 64\)\n4 problems:\n/);
  assert.ok(text.includes(`  ${alpaca}:8: instruction: missing (a string is required)\n`));
  assert.ok(text.includes(`  ${empty}: empty file (no records)\n`));
  assert.ok(text.includes('Truncated to max_length 64: 1 sample'));
  assert.ok(text.includes('Dropped, no supervised token: 1'));
});

test('unknown template and unknown format are errors before any record is read', async () => {
  const tok = await fixtureTokenizer('qwen3');
  await assert.rejects(encodeDataset({ ...cfg, prompt_template: 'nope' }, tok), /unknown prompt_template "nope"/);
  await assert.rejects(encodeDataset({ ...cfg, dataset_format: 'alpacca' }, tok), /unknown dataset_format 'alpacca'/);
});

test('packing: deterministic for a seed, every token kept, rows of max_length', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const encoded = await encodeDataset(cfg, tok, { collectProblems: true });
  const a = buildTrainData(encoded, cfg);
  const b = buildTrainData(encoded, cfg);
  const flat = (rows: typeof a.items): number[] => rows.flatMap((r) => Array.from(r.inputIds));
  assert.deepEqual(flat(a.items), flat(b.items));
  // 3 samples have 6 orders: some other seed gives another one
  const others = [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => flat(buildTrainData(encoded, { ...cfg, seed }).items));
  assert.ok(others.some((o) => JSON.stringify(o) !== JSON.stringify(flat(a.items))));
  assert.ok(a.items.every((r) => r.inputIds.length === 64));
  const total = encoded.samples.reduce((n, s) => n + s.inputIds.length, 0);
  assert.equal(a.stats.rows * 64 - a.stats.paddingTokens, total);
  // the same multiset of tokens as the samples
  const sorted = (xs: number[]): number[] => xs.sort((x, y) => x - y);
  assert.deepEqual(sorted(flat(a.items).slice(0, total)), sorted(encoded.samples.flatMap((s) => Array.from(s.inputIds))));
  // not packed: the samples themselves, padded per batch
  const unpacked = buildTrainData(encoded, { ...cfg, pack_to_max_length: false });
  assert.equal(unpacked.items.length, 3);
});

test('log-dataset output as XTuner prints it', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const ids = tok.encode('Q: hi A: hello', { addSpecialTokens: false });
  const answer = tok.encode(' hello', { addSpecialTokens: false });
  const n = ids.length - answer.length;
  const item = { inputIds: Int32Array.from(ids), labels: Int32Array.from(ids, (id, i) => (i < n ? -100 : id)) };
  assert.equal(
    formatLogItem(item, tok, 'all'),
    [
      `${'#'.repeat(20)}   text   ${'#'.repeat(20)}`,
      'Q: hi A: hello',
      `${'#'.repeat(20)}   text(masked)   ${'#'.repeat(20)}`,
      Array(n).fill('[-100]').join(' ') + '  hello',
      `${'#'.repeat(20)}   input_ids   ${'#'.repeat(20)}`,
      `[${ids.join(', ')}]`,
      `${'#'.repeat(20)}   labels   ${'#'.repeat(20)}`,
      `[${[...Array(n).fill(-100), ...answer].join(', ')}]`,
      '',
    ].join('\n'),
  );
});

test('worker threads give the same samples, problems and counts as one thread', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const one = await encodeDataset(cfg, tok, { collectProblems: true, workers: 0 });
  const two = await encodeDataset(cfg, tok, { collectProblems: true, workers: 2 });
  assert.deepEqual(two.stats, one.stats);
  assert.deepEqual(two.problems, one.problems);
  assert.deepEqual(two.samples, one.samples);
  await assert.rejects(
    encodeDataset(cfg, tok, { workers: 2 }),
    (e: unknown) => e instanceof XtunerError && e.message === `${alpaca}:5: output: missing (a string is required)`,
  );
});
