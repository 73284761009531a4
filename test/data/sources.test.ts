// Reading .json / .jsonl files and folders: records with their location, and every problem
// (malformed line, empty file, wrong top level) reported with file and line.

import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatProblem, listDataFiles, readRecords, type SourceItem } from '../../src/data/sources.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-sources-'));
process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
function write(name: string, text: string): string {
  const p = path.join(dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  return p;
}
async function collect(files: string[]): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const item of readRecords(files)) out.push(item);
  return out;
}

test('jsonl: one record per line, blank lines skipped, 1-based line numbers; a bad line is a problem', async () => {
  const f = write('a.jsonl', '{"text":"one"}\n\n{"text":\n{"text":"three"}\n');
  const items = await collect([f]);
  assert.deepEqual(items[0], { kind: 'record', record: { text: 'one' }, at: { file: f, line: 1 } });
  assert.equal(items[1]!.kind, 'problem');
  if (items[1]!.kind === 'problem') assert.match(formatProblem(items[1]!.problem), new RegExp(`^${f}:3: malformed JSON`));
  assert.deepEqual(items[2], { kind: 'record', record: { text: 'three' }, at: { file: f, line: 4 } });
  assert.equal(items.length, 3);
});

test('json: an array of records, located by index; JSON Lines in a .json file also read', async () => {
  const f = write('b.json', ' [{"a":1},{"a":2}]');
  assert.deepEqual(await collect([f]), [
    { kind: 'record', record: { a: 1 }, at: { file: f, record: 0 } },
    { kind: 'record', record: { a: 2 }, at: { file: f, record: 1 } },
  ]);
  const g = write('c.json', '{"a":1}\n{"a":2}\n');
  assert.deepEqual((await collect([g])).map((i) => i.kind === 'record' && i.at.line), [1, 2]);
});

test('empty files (0 bytes, only blank lines, empty array) are problems naming the file', async () => {
  for (const [name, text] of [['e1.jsonl', ''], ['e2.jsonl', '\n\n'], ['e3.json', '[]']] as const) {
    const f = write(name, text);
    const items = await collect([f]);
    assert.equal(items.length, 1);
    assert.equal(items[0]!.kind === 'problem' && formatProblem(items[0]!.problem), `${f}: empty file (no records)`);
  }
});

test('json with a broken array: a problem naming the file', async () => {
  const f = write('d.json', '[{"a":1},');
  const items = await collect([f]);
  assert.equal(items.length, 1);
  assert.ok(items[0]!.kind === 'problem' && formatProblem(items[0]!.problem).startsWith(`${f}: malformed JSON`));
});

test('folders: .json/.jsonl found recursively in name order, other files ignored; bad paths are errors', () => {
  const root = path.join(dir, 'folder');
  const a = write('folder/z.jsonl', '{}\n');
  const b = write('folder/sub/a.json', '[{}]');
  write('folder/README.md', '# notes');
  assert.deepEqual(listDataFiles(root), [b, a]);
  assert.deepEqual(listDataFiles([a, b]), [a, b]);
  assert.throws(() => listDataFiles(path.join(dir, 'nope.json')), /data_path: .*nope\.json does not exist/);
  assert.throws(() => listDataFiles(write('x.csv', 'a,b')), /x\.csv is not a \.json, \.jsonl or \.parquet file/);
  fs.mkdirSync(path.join(dir, 'emptyfolder'));
  assert.throws(() => listDataFiles(path.join(dir, 'emptyfolder')), /holds no \.json, \.jsonl or \.parquet file/);
});

test('jsonl is streamed: the first record arrives while the writer has not finished the file', async () => {
  // a named pipe: reading the file whole would wait for the writer to close it, which it does
  // only after the first record has come out
  const fifo = path.join(dir, 'pipe.jsonl');
  execFileSync('mkfifo', [fifo]);
  const it = readRecords([fifo]);
  const first = it.next();
  const writer = fs.createWriteStream(fifo);
  writer.write('{"n":1}\n');
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no record before the end of the file')), 5000));
  const got = (await Promise.race([first, timeout])) as IteratorResult<SourceItem>;
  assert.deepEqual(got.value, { kind: 'record', record: { n: 1 }, at: { file: fifo, line: 1 } });
  writer.end('{"n":2}\n');
  const rest: SourceItem[] = [];
  for await (const item of it) rest.push(item);
  assert.deepEqual(rest, [{ kind: 'record', record: { n: 2 }, at: { file: fifo, line: 2 } }]);
});

test('parquet: rows of every row group as objects keyed by column; an unreadable file is a problem naming it', async () => {
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  const text = ['a', 'b', 'c'];
  const bytes = parquetWriteBuffer({
    columnData: [
      { name: 'text', data: text, type: 'STRING' },
      { name: 'n', data: [1n, 2n, 3n], type: 'INT64' },
    ],
    rowGroupSize: 2,
  });
  const f = path.join(dir, 'rows.parquet');
  fs.writeFileSync(f, new Uint8Array(bytes));
  const items = await collect([f]);
  assert.deepEqual(
    items.map((i) => (i.kind === 'record' ? [i.record, i.at.record] : i.problem.message)),
    [[{ text: 'a', n: 1 }, 0], [{ text: 'b', n: 2 }, 1], [{ text: 'c', n: 3 }, 2]],
  );
  assert.deepEqual(listDataFiles(f), [f]);
  const bad = write('bad.parquet', 'not parquet at all');
  const [problem] = await collect([bad]);
  assert.ok(problem!.kind === 'problem' && formatProblem(problem!.problem).startsWith(`${bad}: not a readable Parquet file`));
});
