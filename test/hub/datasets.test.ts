// data_path as a Hugging Face dataset id, against the stand-in hub on 127.0.0.1: the train split
// (a Parquet file in several row groups, or a JSONL file) is downloaded into the HF cache's dataset
// layout and read through the data API; a second run uses the cache without a request; offline
// and script-only datasets give one clear error.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { XtunerError } from '../../src/errors.ts';
import { checkDataset } from '../../src/data/check.ts';
import { encodeDataset, type DataConfig } from '../../src/data/dataset.ts';
import { isDatasetId, readRecords, resolveDataFiles, trainSplitFiles } from '../../src/data/sources.ts';
import { fixtureTokenizer } from '../tokenizer/fixture-tokenizers.ts';
import { deadEndpoint, startFakeHub, type FakeRepo } from './fake-hub.ts';
import { tmpDir } from '../tmp-dir.ts';

const SHA = 'fedcba9876543210fedcba9876543210fedcba98';
const quiet = () => {};

const ALPACA = [
  { instruction: 'Say hi.', input: '', output: 'Hi!' },
  { instruction: 'Add the numbers.', input: '1 2', output: '3' },
  { instruction: 'Nothing to say.', input: '', output: '<nooutput>' },
  { instruction: 'Name a colour.', input: '', output: 'Blue.' },
  { instruction: 'Translate.', input: 'bonjour', output: 'hello' },
];
const TEST_ROWS = [{ instruction: 'held out', input: '', output: 'x' }];

/** Alpaca rows as a Parquet file (snappy, as the hub's files are), `rowsPerGroup` rows per row group. */
function alpacaParquet(rows: typeof ALPACA, rowsPerGroup: number): Uint8Array {
  const column = (name: keyof (typeof ALPACA)[number]) => ({ name, data: rows.map((r) => r[name]), type: 'STRING' as const });
  return new Uint8Array(parquetWriteBuffer({ columnData: [column('instruction'), column('input'), column('output')], rowGroupSize: rowsPerGroup }));
}

const CHAT = [
  { messages: [{ role: 'user', content: 'q1' }, { role: 'assistant', content: 'a1' }] },
  { messages: [{ role: 'user', content: 'q2' }, { role: 'assistant', content: 'a2' }] },
];

const REPOS: Record<string, FakeRepo> = {
  'datasets/org/alpaca-mini': {
    sha: SHA,
    files: {
      '.gitattributes': '*.parquet filter=lfs',
      'README.md': '# card',
      'data/train-00000-of-00001.parquet': alpacaParquet(ALPACA, 2),
      'data/test-00000-of-00001.parquet': alpacaParquet(TEST_ROWS, 1),
    },
  },
  'datasets/org/chat-mini': {
    sha: SHA,
    files: {
      'train.jsonl': CHAT.map((r) => JSON.stringify(r)).join('\n') + '\n',
      'validation.jsonl': JSON.stringify(CHAT[0]) + '\n',
      'dataset_infos.json': '{}',
    },
  },
  'datasets/org/scripted': { sha: SHA, files: { 'scripted.py': 'import datasets', 'README.md': '# card' } },
};

async function recordsOf(files: string[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const item of readRecords(files)) {
    assert.equal(item.kind, 'record', JSON.stringify(item));
    if (item.kind === 'record') out.push(item.record);
  }
  return out;
}

async function rejectsWith(promise: Promise<unknown>, pattern: RegExp, hintPattern?: RegExp): Promise<XtunerError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof XtunerError, `expected an XtunerError, got ${String(err)}`);
    assert.match(err.message, pattern);
    if (hintPattern) assert.match(err.hint ?? '', hintPattern);
    assert.doesNotMatch(err.message, /\n/);
    return err;
  }
  assert.fail('expected a rejection');
}

const cfg = (data_path: string): DataConfig => ({
  data_path,
  dataset_format: 'alpaca',
  prompt_template: 'internlm2_chat',
  max_length: 128,
  pack_to_max_length: true,
  shuffle_before_pack: true,
  seed: 0,
  batch_size: 1,
});

test('which entries are dataset ids, and which files are the train split', () => {
  assert.ok(isDatasetId('tatsu-lab/alpaca'));
  for (const p of ['data/alpaca.json', 'data/train.parquet', './org/name', 'alpaca', 'a/b/c', os.tmpdir()]) assert.ok(!isDatasetId(p), p);
  assert.deepEqual(
    trainSplitFiles(['README.md', 'data/test-00000-of-00001.parquet', 'data/train-00001-of-00002.parquet', 'data/train-00000-of-00002.parquet']),
    ['data/train-00000-of-00002.parquet', 'data/train-00001-of-00002.parquet'],
  );
  assert.deepEqual(trainSplitFiles(['train/a.jsonl', 'test/a.jsonl', 'trainer.json']), ['train/a.jsonl']);
  // no file named for the train split: all data files (not metadata, not hidden)
  assert.deepEqual(trainSplitFiles(['alpaca_data.json', 'dataset_infos.json', '.hidden/x.json', 'script.py']), ['alpaca_data.json']);
});

test('a parquet dataset id: train split downloaded into the dataset cache layout, records read, then served from the cache', async () => {
  const hub = await startFakeHub(REPOS);
  const cacheDir = tmpDir();
  try {
    const files = await resolveDataFiles('org/alpaca-mini', { cacheDir, endpoint: hub.endpoint, onProgress: quiet });
    const repoDir = path.join(cacheDir, 'datasets--org--alpaca-mini');
    assert.deepEqual(files, [path.join(repoDir, 'snapshots', SHA, 'data', 'train-00000-of-00001.parquet')]);
    assert.equal(fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8'), SHA);
    assert.ok(hub.requests.includes('/api/datasets/org/alpaca-mini/revision/main'));
    assert.ok(hub.requests.includes(`/cdn/datasets/org/alpaca-mini/resolve/${SHA}/data/train-00000-of-00001.parquet`));
    assert.ok(!hub.requests.some((r) => r.includes('test-00000') || r.endsWith('README.md')), 'only the train split is fetched');
    // five rows in three row groups come back as the objects that were written
    assert.deepEqual(await recordsOf(files), ALPACA);
  } finally {
    await hub.close();
  }

  // Second run: the hub is gone (nothing listens), the cache answers; check-custom-dataset's path
  // reads the HF_* variables as a user would set them.
  const saved = { HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_ENDPOINT: process.env.HF_ENDPOINT };
  process.env.HF_HUB_CACHE = cacheDir;
  process.env.HF_ENDPOINT = await deadEndpoint();
  try {
    const tok = await fixtureTokenizer('qwen3');
    const report = await checkDataset(cfg('org/alpaca-mini'), tok);
    assert.deepEqual(report.problems, []);
    assert.equal(report.stats.records, 5);
    assert.equal(report.stats.droppedEmpty, 1, "'<nooutput>' dropped as XTuner's alpaca_map_fn does");
    assert.equal(report.stats.samples, 4);

    // The same records from a local JSONL file encode to the same ids and labels.
    const local = path.join(tmpDir(), 'alpaca.jsonl');
    fs.writeFileSync(local, ALPACA.map((r) => JSON.stringify(r)).join('\n'));
    const fromHub = await encodeDataset(cfg('org/alpaca-mini'), tok);
    const fromFile = await encodeDataset(cfg(local), tok);
    assert.deepEqual(fromHub.samples, fromFile.samples);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('a jsonl dataset id: train.jsonl only, read through encodeDataset with hub options', async () => {
  const hub = await startFakeHub(REPOS);
  try {
    const cacheDir = tmpDir();
    const hubOptions = { cacheDir, endpoint: hub.endpoint, onProgress: quiet };
    const tok = await fixtureTokenizer('qwen3');
    const encoded = await encodeDataset({ ...cfg('org/chat-mini'), dataset_format: 'openai' }, tok, { hub: hubOptions, collectProblems: true });
    const snapshot = path.join(cacheDir, 'datasets--org--chat-mini', 'snapshots', SHA);
    assert.deepEqual(encoded.stats.files, [path.join(snapshot, 'train.jsonl')]);
    assert.deepEqual(fs.readdirSync(snapshot), ['train.jsonl']);
    assert.deepEqual(encoded.problems, []);
    assert.equal(encoded.stats.records, CHAT.length);
    assert.deepEqual(await recordsOf(encoded.stats.files), CHAT);
    const before = hub.requests.length;
    await resolveDataFiles('org/chat-mini', hubOptions);
    assert.equal(hub.requests.length, before, 'a cached dataset is not fetched again');
  } finally {
    await hub.close();
  }
});

test('offline with nothing cached: one line naming the dataset and the cache folder, with the way out', async () => {
  const hub = await startFakeHub(REPOS);
  try {
    const cacheDir = tmpDir();
    await rejectsWith(
      resolveDataFiles('org/alpaca-mini', { cacheDir, endpoint: hub.endpoint, offline: true }),
      /^dataset org\/alpaca-mini is not in the Hugging Face cache \(.*datasets--org--alpaca-mini\) and downloads are off \(HF_HUB_OFFLINE\)$/,
      /machine with internet into the Hugging Face cache.*point data_path at a local \.json, \.jsonl or \.parquet file/,
    );
    assert.equal(hub.requests.length, 0);
  } finally {
    await hub.close();
  }
  await rejectsWith(
    resolveDataFiles('org/alpaca-mini', { cacheDir: tmpDir(), endpoint: await deadEndpoint(), onProgress: quiet }),
    /^cannot download dataset org\/alpaca-mini from http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED \(is this machine offline\?\)$/,
    /point data_path at a local/,
  );
});

test('unknown and script-only datasets: errors naming the dataset and what was expected', async () => {
  const hub = await startFakeHub(REPOS);
  try {
    const options = { cacheDir: tmpDir(), endpoint: hub.endpoint, onProgress: quiet };
    await rejectsWith(resolveDataFiles('org/nope', options), /has no dataset org\/nope .*HTTP 404/, /no local file or folder \.\/org\/nope/);
    await rejectsWith(
      resolveDataFiles('org/scripted', options),
      /^dataset org\/scripted \(on the hub\) holds no \.json, \.jsonl or \.parquet data file \(it has scripted\.py, README\.md\)$/,
      /loading script/,
    );
  } finally {
    await hub.close();
  }
});
