// The atomic writer: a target is the old file or the complete new one, never a part; a failed
// write leaves no temporary behind and says which file it could not write.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { writeDirAtomic, writeFileAtomic, writeJsonAtomic, writeStreamAtomic, writeStreamAtomicAsync } from '../../src/io/atomic.ts';
import { tmpDir } from '../tmp-dir.ts';

function diskFull(): Error {
  return Object.assign(new Error('no space left on device, write'), { code: 'ENOSPC' });
}

test('text, bytes and JSON land whole, in a folder made on the way', () => {
  const dir = tmpDir();
  const f = path.join(dir, 'a', 'b', 'x.txt');
  writeFileAtomic(f, 'héllo');
  assert.equal(fs.readFileSync(f, 'utf8'), 'héllo');
  writeFileAtomic(f, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...fs.readFileSync(f)], [1, 2, 3]);
  writeJsonAtomic(f, { a: [1] });
  assert.equal(fs.readFileSync(f, 'utf8'), '{\n  "a": [\n    1\n  ]\n}\n');
  assert.deepEqual(fs.readdirSync(path.dirname(f)), ['x.txt']);
});

test('a stream that fails part-way leaves the old file and no temporary', async () => {
  const dir = tmpDir();
  const f = path.join(dir, 'w.bin');
  writeFileAtomic(f, 'old');
  assert.throws(
    () =>
      writeStreamAtomic(f, (write) => {
        write(new Uint8Array(1000));
        throw diskFull();
      }),
    (e: unknown) => {
      assert.ok(e instanceof XtunerError);
      assert.equal(e.message, `cannot write ${f}: no space left on device, write`);
      assert.match(e.hint ?? '', /disk is full/);
      assert.equal((e.cause as NodeJS.ErrnoException).code, 'ENOSPC');
      return true;
    },
  );
  await assert.rejects(
    writeStreamAtomicAsync(f, async (write) => {
      write(new Uint8Array(10));
      await new Promise((r) => setImmediate(r));
      throw new XtunerError('download broke off');
    }),
    (e: unknown) => e instanceof XtunerError && e.message === 'download broke off', // our own errors pass through
  );
  assert.equal(fs.readFileSync(f, 'utf8'), 'old');
  assert.deepEqual(fs.readdirSync(dir), ['w.bin']);

  await writeStreamAtomicAsync(f, async (write) => {
    write(Buffer.from('n'));
    await new Promise((r) => setImmediate(r));
    write(Buffer.from('ew'));
  });
  assert.equal(fs.readFileSync(f, 'utf8'), 'new');
});

test('a folder is replaced only once its new contents are complete', async () => {
  const dir = tmpDir();
  const target = path.join(dir, 'iter_2');
  await writeDirAtomic(target, (tmp) => writeFileAtomic(path.join(tmp, 'a'), '1'));
  await assert.rejects(
    writeDirAtomic(target, (tmp) => {
      writeFileAtomic(path.join(tmp, 'a'), '2');
      throw diskFull();
    }),
    /cannot write .*iter_2: no space left/,
  );
  assert.deepEqual(fs.readdirSync(dir), ['iter_2']);
  assert.equal(fs.readFileSync(path.join(target, 'a'), 'utf8'), '1');
  await writeDirAtomic(target, (tmp) => writeFileAtomic(path.join(tmp, 'b'), '3'));
  assert.deepEqual(fs.readdirSync(target), ['b']);
});

test('an unwritable place is one message naming the file', { skip: process.getuid?.() === 0 ? 'root writes anywhere' : false }, () => {
  const dir = tmpDir();
  fs.chmodSync(dir, 0o500);
  try {
    assert.throws(() => writeFileAtomic(path.join(dir, 'x'), 'y'), (e: unknown) => {
      assert.ok(e instanceof XtunerError);
      assert.match(e.message, new RegExp(`^cannot write ${path.join(dir, 'x')}: EACCES`));
      assert.match(e.hint ?? '', /is writable/);
      return true;
    });
  } finally {
    fs.chmodSync(dir, 0o700);
  }
});
