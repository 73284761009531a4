import test from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { ReadBuffer, SafetensorsReader, hostToFloat32, tensorBytes, writeSafetensors, type HostTensor, type WriteTensor } from '../../src/io/safetensors.ts';
import { CheckpointReader, writeCheckpoint, SAFETENSORS_INDEX } from '../../src/io/checkpoint.ts';
import { tmpDir } from '../tmp-dir.ts';

const FIXTURE = 'test/fixtures/models/llama_forward/model/model.safetensors';

/** Builds a safetensors file by hand (independently of the writer): header JSON + raw data. */
function handMade(header: unknown, data: Uint8Array, lenOverride?: bigint): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

function expectError(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof XtunerError, `expected XtunerError, got ${String(e)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message "${e.message}" lacks "${p}"`);
    return true;
  });
}

test('reads a file written by Python safetensors (the llama fixture)', () => {
  const r = SafetensorsReader.open(FIXTURE);
  try {
    assert.deepEqual(r.metadata, { format: 'pt' });
    assert.equal(r.names().length, 21); // embed, norm, lm_head + 2 layers x 9
    const e = r.entry('model.layers.0.self_attn.k_proj.weight');
    assert.equal(e.dtype, 'F32');
    assert.deepEqual(e.shape, [32, 64]);
    const t = r.read('model.layers.0.self_attn.k_proj.weight');
    assert.ok(t.data instanceof Float32Array && t.data.length === 32 * 64);
    // Check the bytes against a direct read of the file at the header's offsets.
    const raw = fs.readFileSync(FIXTURE);
    const direct = new Float32Array(raw.buffer.slice(raw.byteOffset + e.start, raw.byteOffset + e.end));
    assert.deepEqual(t.data, direct);
  } finally {
    r.close();
  }
});

test('reads into a ReadBuffer: the values of fresh reads, one buffer reused while it is large enough', () => {
  const r = SafetensorsReader.open(FIXTURE);
  try {
    const buffer = new ReadBuffer();
    const names = r.names().sort((a, b) => tensorBytes(r.entry(b)) - tensorBytes(r.entry(a))); // largest first
    const first = r.read(names[0]!, buffer).data.buffer;
    for (const name of names) {
      const fresh = r.read(name);
      const reused = r.read(name, buffer);
      assert.equal(reused.data.buffer, first, `${name}: read into the same buffer`);
      assert.deepEqual([reused.dtype, reused.shape, reused.data.length], [fresh.dtype, fresh.shape, fresh.data.length], name);
      assert.deepEqual(reused.data, fresh.data, name);
    }
  } finally {
    r.close();
  }
});

test('hand-made file: 16-bit floats, ints and bool decode to the known values', () => {
  const dir = tmpDir();
  const data = Buffer.alloc(2 + 2 + 8 + 1);
  data.writeUInt16LE(0x3f80, 0); // bf16 1.0
  data.writeUInt16LE(0xc100, 2); // f16 -2.5
  data.writeBigInt64LE(-7n, 4);
  data.writeUInt8(1, 12);
  const header = {
    __metadata__: { note: 'x' },
    a: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] },
    b: { dtype: 'F16', shape: [], data_offsets: [2, 4] },
    c: { dtype: 'I64', shape: [1, 1], data_offsets: [4, 12] },
    d: { dtype: 'BOOL', shape: [1], data_offsets: [12, 13] },
  };
  const file = path.join(dir, 'h.safetensors');
  fs.writeFileSync(file, handMade(header, data));
  const r = SafetensorsReader.open(file);
  assert.deepEqual(r.metadata, { note: 'x' });
  assert.deepEqual([...hostToFloat32(r.read('a'))], [1]);
  assert.deepEqual([...hostToFloat32(r.read('b'))], [-2.5]);
  assert.deepEqual(r.read('b').shape, []);
  assert.deepEqual([...(r.read('c').data as BigInt64Array)], [-7n]);
  assert.deepEqual([...r.read('d').data], [1]);
  r.close();
});

test('round trip of every dtype, header layout checked by hand', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'all.safetensors');
  const tensors: Array<[string, HostTensor]> = [
    ['f64', { dtype: 'F64', shape: [2, 2], data: new Float64Array([1e-300, -2, 3.5, Math.PI]) }],
    ['f32', { dtype: 'F32', shape: [3], data: new Float32Array([0.1, -0, Infinity]) }],
    ['f16', { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0x7bff]) }],
    ['bf16', { dtype: 'BF16', shape: [1, 2], data: new Uint16Array([0x3f80, 0xbf00]) }],
    ['i64', { dtype: 'I64', shape: [2], data: new BigInt64Array([-(2n ** 62n), 5n]) }],
    ['i32', { dtype: 'I32', shape: [2], data: new Int32Array([-2147483648, 7]) }],
    ['i16', { dtype: 'I16', shape: [1], data: new Int16Array([-300]) }],
    ['i8', { dtype: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) }],
    ['u8', { dtype: 'U8', shape: [2], data: new Uint8Array([0, 255]) }],
    ['bool', { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) }],
    ['empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
  ];
  writeSafetensors(file, tensors, { format: 'pt' });
  assert.deepEqual(fs.readdirSync(dir), ['all.safetensors'], 'no temporary file left behind');

  const raw = fs.readFileSync(file);
  const n = Number(raw.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header padded to 8 bytes');
  const header = JSON.parse(raw.subarray(8, 8 + n).toString());
  assert.deepEqual(header.__metadata__, { format: 'pt' });
  assert.deepEqual(header.f64, { dtype: 'F64', shape: [2, 2], data_offsets: [0, 32] });
  assert.deepEqual(header.f32.data_offsets, [32, 44]);
  assert.equal(raw.length, 8 + n + 32 + 12 + 4 + 4 + 16 + 8 + 2 + 3 + 2 + 2);

  const r = SafetensorsReader.open(file);
  for (const [name, t] of tensors) {
    const back = r.read(name);
    assert.equal(back.dtype, t.dtype, name);
    assert.deepEqual(back.shape, t.shape, name);
    assert.deepEqual(back.data, t.data, name);
  }
  assert.deepEqual([...hostToFloat32(r.read('f16'))], [1, 65504]);
  assert.deepEqual([...hostToFloat32(r.read('bf16'))], [1, -0.5]);
  assert.deepEqual([...hostToFloat32(r.read('i8'))], [-128, 0, 127]);
  r.close();
});

test('lazy data thunks are called once each, in order', () => {
  const dir = tmpDir();
  const calls: string[] = [];
  const lazy = (name: string, v: number): [string, WriteTensor] => [
    name,
    { dtype: 'F32', shape: [2], data: () => (calls.push(name), new Float32Array([v, v])) },
  ];
  writeSafetensors(path.join(dir, 'l.safetensors'), [lazy('x', 1), lazy('y', 2)]);
  assert.deepEqual(calls, ['x', 'y']);
  const r = SafetensorsReader.open(path.join(dir, 'l.safetensors'));
  assert.deepEqual([...(r.read('y').data as Float32Array)], [2, 2]);
  r.close();
});

test('sharded checkpoint: split by max shard size, index written, read back, old shards removed', () => {
  const dir = tmpDir();
  const mk = (n: number, v: number): HostTensor => ({ dtype: 'F32', shape: [n], data: new Float32Array(n).fill(v) });
  // 100 + 100 + 300 + 50 floats with a 1000-byte limit: [a,b] (800 B), [c] (1200 B, alone), [d].
  const tensors: Array<[string, HostTensor]> = [['a', mk(100, 1)], ['b', mk(100, 2)], ['c', mk(300, 3)], ['d', mk(50, 4)]];
  const files = writeCheckpoint(dir, tensors, { maxShardBytes: 1000 });
  assert.deepEqual(files, [
    'model-00001-of-00003.safetensors',
    'model-00002-of-00003.safetensors',
    'model-00003-of-00003.safetensors',
    SAFETENSORS_INDEX,
  ]);
  const index = JSON.parse(fs.readFileSync(path.join(dir, SAFETENSORS_INDEX), 'utf8'));
  assert.equal(index.metadata.total_size, 550 * 4);
  assert.deepEqual(index.weight_map, {
    a: 'model-00001-of-00003.safetensors',
    b: 'model-00001-of-00003.safetensors',
    c: 'model-00002-of-00003.safetensors',
    d: 'model-00003-of-00003.safetensors',
  });
  const r = CheckpointReader.open(dir);
  assert.deepEqual(r.names().sort(), ['a', 'b', 'c', 'd']);
  for (const [name, t] of tensors) assert.deepEqual(r.read(name).data, t.data);
  assert.ok(r.entry('c').file.endsWith('model-00002-of-00003.safetensors'));
  r.close();

  // Saving again unsharded replaces the shards and the index.
  writeCheckpoint(dir, tensors);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['model.safetensors']);
  const r2 = CheckpointReader.open(dir);
  assert.deepEqual(r2.read('d').data, tensors[3]![1].data);
  r2.close();
});

test('bad files give an XtunerError naming the file and the tensor', () => {
  const dir = tmpDir();
  const f = (name: string, bytes: Uint8Array) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, bytes);
    return p;
  };
  const eight = new Uint8Array(8);
  const ok = (o: [number, number], extra: object = {}) => ({ w: { dtype: 'F32', shape: [2], data_offsets: o, ...extra } });

  const missing = path.join(dir, 'nope.safetensors');
  expectError(() => SafetensorsReader.open(missing), missing, 'not found');

  const tiny = f('tiny.safetensors', new Uint8Array(3));
  expectError(() => SafetensorsReader.open(tiny), tiny, 'too short');

  const longHeader = f('long.safetensors', handMade(ok([0, 8]), eight, 10_000n));
  expectError(() => SafetensorsReader.open(longHeader), longHeader, 'header length');

  const notJson = f('notjson.safetensors', handMade({}, eight).fill(0x7b, 8, 10));
  expectError(() => SafetensorsReader.open(notJson), notJson, 'JSON');

  const lying = f('lying.safetensors', handMade(ok([0, 12]), new Uint8Array(12)));
  expectError(() => SafetensorsReader.open(lying), lying, "'w'", 'needs 8');

  const truncated = f('trunc.safetensors', handMade(ok([0, 8]), new Uint8Array(5)));
  expectError(() => SafetensorsReader.open(truncated), truncated, "'w'", 'truncated');

  const dtype = f('dtype.safetensors', handMade({ w: { dtype: 'F8_E4M3', shape: [8], data_offsets: [0, 8] } }, eight));
  expectError(() => SafetensorsReader.open(dtype), dtype, "'w'", 'F8_E4M3');

  const overlap = f('overlap.safetensors', handMade({ ...ok([0, 8]), v: { dtype: 'I32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)));
  expectError(() => SafetensorsReader.open(overlap), overlap, 'overlap');

  const badShape = f('shape.safetensors', handMade({ w: { dtype: 'U8', shape: [-1], data_offsets: [0, 8] } }, eight));
  expectError(() => SafetensorsReader.open(badShape), badShape, "'w'", 'shape');

  const badOffsets = f('off.safetensors', handMade({ w: { dtype: 'U8', shape: [0], data_offsets: [5, 2] } }, eight));
  expectError(() => SafetensorsReader.open(badOffsets), badOffsets, "'w'", 'data_offsets');

  // A file cut after opening (header still valid): the read itself reports the truncation.
  const cut = f('cut.safetensors', handMade(ok([0, 8]), eight));
  const r = SafetensorsReader.open(cut);
  fs.truncateSync(cut, fs.statSync(cut).size - 4);
  expectError(() => r.read('w'), cut, "'w'", 'truncated');
  expectError(() => r.read('nope'), cut, "'nope'");
  r.close();
});

test('bad sharded folders: missing shard, name not in shard, no weights at all', () => {
  const dir = tmpDir();
  writeCheckpoint(dir, [['a', { dtype: 'U8', shape: [4], data: new Uint8Array(4) }]]);
  const shard = 'model-00001-of-00002.safetensors';
  fs.renameSync(path.join(dir, 'model.safetensors'), path.join(dir, shard));
  fs.writeFileSync(path.join(dir, SAFETENSORS_INDEX), JSON.stringify({ weight_map: { a: shard, b: 'model-00002-of-00002.safetensors' } }));
  expectError(() => CheckpointReader.open(dir), 'model-00002-of-00002.safetensors', 'not found');
  fs.writeFileSync(path.join(dir, SAFETENSORS_INDEX), JSON.stringify({ weight_map: { a: shard, b: shard } }));
  expectError(() => CheckpointReader.open(dir), SAFETENSORS_INDEX, "'b'");
  fs.writeFileSync(path.join(dir, SAFETENSORS_INDEX), JSON.stringify({ weight_map: { a: '../x.safetensors' } }));
  expectError(() => CheckpointReader.open(dir), SAFETENSORS_INDEX, 'not a file name');

  const empty = tmpDir();
  fs.writeFileSync(path.join(empty, 'pytorch_model.bin'), '');
  assert.throws(() => CheckpointReader.open(empty), (e: unknown) => e instanceof XtunerError && e.message.includes(empty) && /pytorch_model\.bin/.test(e.hint ?? ''));
});

test('a folder with model.safetensors and a shard index reads model.safetensors, as transformers does', () => {
  const dir = tmpDir();
  writeCheckpoint(dir, [['a', { dtype: 'U8', shape: [2], data: Uint8Array.of(1, 2) }]]);
  fs.writeFileSync(path.join(dir, SAFETENSORS_INDEX), JSON.stringify({ weight_map: { a: 'model-00001-of-00001.safetensors' } })); // a shard that is not there
  const r = CheckpointReader.open(dir);
  assert.deepEqual([...(r.read('a').data as Uint8Array)], [1, 2]);
  r.close();
});
