// One .safetensors file: a validating, lazy reader and a streaming, atomic writer.
// Layout: u64 little-endian header length N, N bytes of JSON header, then the byte buffer; each
// tensor's `data_offsets` are relative to the buffer. Tensors are read one at a time with positioned
// reads, so a 14 GB checkpoint never sits in one Buffer. Data stays in its file dtype here (16-bit
// floats as raw bits in a Uint16Array); conversion to engine tensors is the model loader's job.
// Sharded folders (model.safetensors.index.json) are in ./checkpoint.ts.

import * as fs from 'node:fs';
import { XtunerError } from '../errors.ts';
import { f32ToHalf, halfToF32 } from '../tensor/dtype.ts';
import { writeStreamAtomic } from './atomic.ts';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export type HostData =
  | Float64Array
  | Float32Array
  | Uint16Array // F16 and BF16 bit patterns
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array; // U8 and BOOL

/** A tensor in host memory, in one of the file dtypes. */
export interface HostTensor {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: HostData;
}

/** A tensor to write: its data may be produced only when its turn comes (saves memory). */
export interface WriteTensor {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: HostData | (() => HostData);
}

/** Where one tensor lives in its file. `start`/`end` are absolute byte offsets. */
export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
  start: number;
  end: number;
}

/** Element size, and a view of the first `n` elements of a buffer. */
const DTYPES: Record<SafetensorsDtype, { bytes: number; make: (buf: ArrayBuffer, n: number) => HostData }> = {
  F64: { bytes: 8, make: (b, n) => new Float64Array(b, 0, n) },
  F32: { bytes: 4, make: (b, n) => new Float32Array(b, 0, n) },
  F16: { bytes: 2, make: (b, n) => new Uint16Array(b, 0, n) },
  BF16: { bytes: 2, make: (b, n) => new Uint16Array(b, 0, n) },
  I64: { bytes: 8, make: (b, n) => new BigInt64Array(b, 0, n) },
  I32: { bytes: 4, make: (b, n) => new Int32Array(b, 0, n) },
  I16: { bytes: 2, make: (b, n) => new Int16Array(b, 0, n) },
  I8: { bytes: 1, make: (b, n) => new Int8Array(b, 0, n) },
  U8: { bytes: 1, make: (b, n) => new Uint8Array(b, 0, n) },
  BOOL: { bytes: 1, make: (b, n) => new Uint8Array(b, 0, n) },
};

/**
 * One buffer that the reads of many tensors reuse, for data copied away right after each read (a
 * model load: every tensor goes into storage of its own). Saves a fresh, zero-filled allocation per
 * tensor: its page faults cost about as much as reading the file from the page cache. A read into
 * it is valid until the next one.
 */
export class ReadBuffer {
  #buf = new ArrayBuffer(0);

  /** An ArrayBuffer of at least `bytes`: this one's, grown when smaller. */
  take(bytes: number): ArrayBuffer {
    if (this.#buf.byteLength < bytes) this.#buf = new ArrayBuffer(bytes);
    return this.#buf;
  }
}

/** The reference implementation refuses headers over 100 MB; so do we (it also bounds a bad length). */
const MAX_HEADER_BYTES = 100_000_000;
/** fs.readSync takes at most 2 GiB per call. */
const IO_CHUNK = 1 << 30;

export function isSafetensorsDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === 'string' && Object.hasOwn(DTYPES, s);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function fail(path: string, msg: string, hint?: string): never {
  throw new XtunerError(`${path}: ${msg}`, hint === undefined ? {} : { hint });
}

/** Lazy reader of one .safetensors file. Call close() when done (it holds a file descriptor). */
export class SafetensorsReader {
  readonly path: string;
  /** The header's `__metadata__` (string to string), empty when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  readonly fileBytes: number;
  private readonly entries: Map<string, TensorEntry>;
  private fd: number | null;

  private constructor(path: string, fd: number, fileBytes: number, metadata: Record<string, string>, entries: Map<string, TensorEntry>) {
    this.path = path;
    this.fd = fd;
    this.fileBytes = fileBytes;
    this.metadata = metadata;
    this.entries = entries;
  }

  static open(path: string): SafetensorsReader {
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      fail(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(e)})`);
    }
    try {
      const fileBytes = fs.fstatSync(fd).size;
      const { metadata, entries } = parseHeader(path, fd, fileBytes);
      return new SafetensorsReader(path, fd, fileBytes, metadata, entries);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): TensorEntry {
    const e = this.entries.get(name);
    if (!e) fail(this.path, `no tensor named '${name}'`);
    return e;
  }

  /** The tensor's bytes at the start of a fresh buffer, or of `into`'s (see ReadBuffer). */
  readBytes(name: string, into?: ReadBuffer): ArrayBuffer {
    const e = this.entry(name);
    if (this.fd === null) fail(this.path, `read of '${name}' after close()`);
    const buf = into ? into.take(e.end - e.start) : new ArrayBuffer(e.end - e.start);
    const view = new Uint8Array(buf, 0, e.end - e.start);
    for (let done = 0; done < view.length; ) {
      const n = fs.readSync(this.fd, view, done, Math.min(IO_CHUNK, view.length - done), e.start + done);
      if (n === 0) fail(this.path, `tensor '${name}': file ended at byte ${e.start + done}, expected ${e.end} (truncated?)`);
      done += n;
    }
    return buf;
  }

  /** The tensor, its data in a fresh buffer, or in `into`'s until its next read. */
  read(name: string, into?: ReadBuffer): HostTensor {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: e.shape, data: DTYPES[e.dtype].make(this.readBytes(name, into), numel(e.shape)) };
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function parseHeader(path: string, fd: number, fileBytes: number): { metadata: Record<string, string>; entries: Map<string, TensorEntry> } {
  if (fileBytes < 8) fail(path, `file is ${fileBytes} bytes, too short for a safetensors header (truncated?)`);
  const lenBuf = Buffer.alloc(8);
  fs.readSync(fd, lenBuf, 0, 8, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(fileBytes - 8)) {
    fail(path, `header length ${headerLen} exceeds the file size ${fileBytes} (truncated, or not a safetensors file)`);
  }
  const n = Number(headerLen);
  if (n > MAX_HEADER_BYTES) fail(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const headerBuf = Buffer.alloc(n);
  fs.readSync(fd, headerBuf, 0, n, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch (e) {
    fail(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail(path, 'header is not a JSON object');

  const dataStart = 8 + n;
  const dataBytes = fileBytes - dataStart;
  let metadata: Record<string, string> = {};
  const entries = new Map<string, TensorEntry>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Object.values(raw).some((v) => typeof v !== 'string')) {
        fail(path, '__metadata__ must map strings to strings');
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `tensor '${name}'`;
    if (typeof t !== 'object' || t === null) fail(path, `${where}: header entry is not an object`);
    if (!isSafetensorsDtype(t.dtype)) {
      fail(path, `${where}: unknown dtype ${JSON.stringify(t.dtype)}`, `supported: ${Object.keys(DTYPES).join(', ')}`);
    }
    const shape = t.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(path, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1]) {
      fail(path, `${where}: data_offsets ${JSON.stringify(off)} is not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = off as [number, number];
    const want = numel(shape) * DTYPES[t.dtype].bytes;
    if (end - begin !== want) {
      fail(path, `${where}: data_offsets span ${end - begin} bytes but ${t.dtype} x [${shape.join(', ')}] needs ${want}`);
    }
    if (end > dataBytes) {
      fail(path, `${where}: data ends at byte ${dataStart + end} but the file has ${fileBytes} bytes (truncated?)`);
    }
    entries.set(name, { name, dtype: t.dtype, shape: shape as number[], start: dataStart + begin, end: dataStart + end });
  }
  const sorted = [...entries.values()].filter((e) => e.end > e.start).sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.start < sorted[i - 1]!.end) {
      fail(path, `tensors '${sorted[i - 1]!.name}' and '${sorted[i]!.name}' overlap in the data buffer`);
    }
  }
  return { metadata, entries };
}

/** Converts any float or integer host tensor to float32 (16-bit floats decoded, F64 rounded). */
export function hostToFloat32(t: HostTensor): Float32Array {
  const d = t.data;
  if (t.dtype === 'F32') return d as Float32Array;
  if (t.dtype === 'BF16') return halfToF32(d as Uint16Array, 'bfloat16');
  if (t.dtype === 'F16') return halfToF32(d as Uint16Array, 'float16');
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = Number(d[i]!);
  return out;
}

/** The file dtype of each float tensor dtype. */
export const FLOAT_FILE_DTYPE = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' } as const satisfies Record<string, SafetensorsDtype>;

/** float32 values as a tensor of a float file dtype holds them (16-bit floats rounded to nearest even): the inverse of hostToFloat32. */
export function float32ToHost(values: Float32Array, dtype: SafetensorsDtype): Float32Array | Uint16Array {
  if (dtype === 'F32') return values;
  if (dtype === 'BF16') return f32ToHalf(values, 'bfloat16');
  if (dtype === 'F16') return f32ToHalf(values, 'float16');
  throw new Error(`float32ToHost: ${dtype} is not a float dtype`);
}

/** Total bytes a tensor takes in the data buffer. */
export function tensorBytes(t: { dtype: SafetensorsDtype; shape: readonly number[] }): number {
  return numel(t.shape) * DTYPES[t.dtype].bytes;
}

/**
 * Writes tensors (in the given order) to `path` atomically (./atomic.ts).
 * Lazy `data` thunks are called one at a time while writing, so only one tensor's data need exist.
 */
export function writeSafetensors(
  path: string,
  tensors: Iterable<readonly [string, WriteTensor]>,
  metadata?: Record<string, string>,
): void {
  const list = [...tensors];
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__' || Object.hasOwn(header, name)) fail(path, `cannot write tensor name '${name}' (reserved or duplicate)`);
    const bytes = tensorBytes(t);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header with spaces to a multiple of 8, as the reference writer does (keeps data aligned).
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));

  writeStreamAtomic(path, (write) => {
    write(len);
    write(json);
    for (const [name, t] of list) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      const want = tensorBytes(t);
      if (data.byteLength !== want) {
        fail(path, `tensor '${name}': data has ${data.byteLength} bytes but ${t.dtype} x [${t.shape.join(', ')}] needs ${want}`);
      }
      write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  });
}
