// The CUDA backend's host side against a fake driver and a fake cuBLAS (test/cuda/fake/, built
// here with the C compiler), so it runs on machines without a GPU: library loading, device memory
// through the caching allocator (real copies and memsets on host memory), the out-of-memory error,
// the row-major GEMM mapping onto cuBLAS (the fake computes it), and every launcher: each kernel
// of the build is launched at least once with arguments that must match its parameters (checked
// against the PTX) and a launch configuration the fake accepts. Kernels do not run here; their
// numbers are tested on a real GPU by the other files of this folder.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import koffi from 'koffi';
import type { Backend, BinaryOp, UnaryOp } from '../../src/backends/backend.ts';
import { cpuBackend } from '../../src/backends/cpu/index.ts';
import { ADAMW_STATE_WORDS, adamwStateWords } from '../../src/backends/backend.ts';
import { cudaBackend, type CudaBackend, type CudaStorage } from '../../src/backends/cuda/index.ts';
import { kernelDir } from '../../src/backends/cuda/kernels.ts';
import { XtunerError } from '../../src/errors.ts';
import { f32ToHost, hostToF32, type DType, type FloatDType } from '../../src/tensor/dtype.ts';
import { memoryStats, tensor, toDevice } from '../../src/tensor/index.ts';
import { buildFakeCuda } from './fake/build.ts';

const FAKE_MEM = 64 * 1024 * 1024;
const fakeCuda = buildFakeCuda();
const dir = fakeCuda.dir;
const SKIP = fakeCuda.skip;
const KERNELS_BUILT = fs.existsSync(path.join(kernelDir(), 'STAMP'));
const SKIP_KERNELS = SKIP || (KERNELS_BUILT ? false : `kernels not built (${kernelDir()}): run scripts/build-cuda.sh`);

let b: CudaBackend;
let launchLog: () => string[];
test.before(() => {
  if (SKIP) return;
  Object.assign(process.env, fakeCuda.env(FAKE_MEM));
  b = cudaBackend();
  const fake = koffi.load(path.join(dir, 'libcuda.so.1'));
  const log = fake.func('int fake_launch_log(_Out_ uint8_t *out, int len)');
  const buf = Buffer.alloc(1 << 20);
  launchLog = () => {
    const n = log(buf, buf.length) as number;
    return buf.toString('utf8', 0, n).split('\n').filter(Boolean);
  };
});
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

function upload(dtype: DType, values: number[] | Float32Array): CudaStorage {
  const host = f32ToHost(Float32Array.from(values), dtype);
  const s = b.alloc(dtype, host.length);
  b.write(s, dtype, 0, host);
  return s;
}

test('the fake device is found and described', { skip: SKIP }, () => {
  assert.equal(b.info.name, 'Fake GPU');
  assert.deepEqual(b.info.computeCapability, [9, 0]);
  assert.equal(b.info.driverVersion, '13.0');
});

test('a host tensor fills a device tensor of its dtype (assign, toDevice): its values, in one upload; other crossings refuse', { skip: SKIP }, () => {
  const [cpu0, cuda0] = [memoryStats('cpu').liveBytes, memoryStats('cuda').liveBytes];
  const host = tensor(Uint16Array.from({ length: 24 }, (_, i) => 0x3f80 + i), [4, 6], { dtype: 'bfloat16' });
  const dev = tensor(new Uint16Array(24), [4, 6], { dtype: 'bfloat16', device: 'cuda' });
  // bytes counted per device
  assert.deepEqual([memoryStats('cpu').liveBytes - cpu0, memoryStats('cuda').liveBytes - cuda0], [48, 48]);
  b.takeCounters();
  dev.assign(host);
  assert.equal(b.takeCounters().htod, 1);
  assert.deepEqual(dev.toHostArray(), host.toHostArray());
  const moved = toDevice(host._view(6, [3, 6]), 'cuda'); // a view: its own elements only
  assert.deepEqual(moved.toHostArray(), host.toHostArray().subarray(6));
  assert.throws(() => dev.assign(tensor(new Float32Array(24), [4, 6])), /assign: source on cpu, target on cuda/);
  assert.throws(() => host.assign(dev), /assign: source on cuda, target on cpu/);
  for (const t of [host, dev, moved]) t.dispose();
});

test('a missing kernel build is an XtunerError naming the file and the fix', { skip: SKIP }, () => {
  // runs before any softmax launch, so that module is not loaded yet
  const saved = process.env['XTUNER_CUDA_KERNELS'];
  process.env['XTUNER_CUDA_KERNELS'] = path.join(dir, 'nowhere');
  try {
    const x = b.alloc('float32', 4);
    assert.throws(
      () => b.softmax(x, x, 1, 4, 'float32'),
      (e: unknown) => e instanceof XtunerError && /CUDA kernels not built: .*nowhere\/softmax\.fatbin is missing/.test(e.message) && /npm run build:cuda/.test(e.hint ?? ''),
    );
    b.free(x);
  } finally {
    if (saved === undefined) delete process.env['XTUNER_CUDA_KERNELS'];
    else process.env['XTUNER_CUDA_KERNELS'] = saved;
  }
});

test('alloc zeroes; write/read at offsets; fill and same-dtype cast move real bytes', { skip: SKIP }, () => {
  for (const dtype of ['float32', 'bfloat16', 'float16', 'int32', 'int64', 'uint8'] as DType[]) {
    const s = b.alloc(dtype, 100);
    assert.deepEqual(hostToF32(b.read(s, dtype, 0, 100), dtype), new Float32Array(100), `${dtype} zeroed`);
    const data = f32ToHost(Float32Array.from({ length: 10 }, (_, i) => i * 3 + 1), dtype);
    b.write(s, dtype, 7, data);
    assert.deepEqual(b.read(s, dtype, 7, 10), data, `${dtype} round trip`);
    if (dtype !== 'int64') {
      b.fill(s, dtype, 50, 20, 5);
      const cpu = cpuBackend.alloc(dtype, 100);
      cpuBackend.write(cpu, dtype, 7, data);
      cpuBackend.fill(cpu, dtype, 50, 20, 5);
      assert.deepEqual(b.read(s, dtype, 0, 100), cpuBackend.read(cpu, dtype, 0, 100), `${dtype} fill`);
    }
    const t = b.alloc(dtype, 100);
    b.cast(s, dtype, t, dtype, 100);
    assert.deepEqual(b.read(t, dtype, 0, 100), b.read(s, dtype, 0, 100), `${dtype} copy`);
    assert.throws(() => b.read(s, dtype, 95, 10), /outside the storage/);
    b.free(s);
    b.free(t);
  }
});

test('a captured memset, device copy and GEMM replay on launch; host copies are refused by the fake itself', { skip: SKIP }, () => {
  const a = upload('float32', [1, 2, 3, 4, 5, 6]); // [2, 3]
  const w = upload('float32', [1, 0, 0, 1, 1, 1]); // [3, 2]
  const c = b.alloc('float32', 4);
  const d = b.alloc('float32', 4);
  const graph = b.captureGraph(() => {
    b.fill(c, 'float32', 0, 4, 7); // a memset
    b.gemm({
      transA: false, transB: false, m: 2, n: 2, k: 3, alpha: 1, beta: 1, a, aOffset: 0, lda: 3, aDtype: 'float32',
      b: w, bOffset: 0, ldb: 2, bDtype: 'float32', c, cOffset: 0, ldc: 2, cDtype: 'float32', batch: 1, strideA: 0, strideB: 0, strideC: 0,
    });
    b.cast(c, 'float32', d, 'float32', 4); // a device-to-device copy
  });
  assert.deepEqual([...b.read(d, 'float32', 0, 4)], [0, 0, 0, 0], 'capture runs nothing');
  for (const scale of [1, 2]) {
    b.write(a, 'float32', 0, Float32Array.from([1, 2, 3, 4, 5, 6], (v) => v * scale));
    graph.launch();
    assert.deepEqual([...b.read(d, 'float32', 0, 4)], [7 + 4 * scale, 7 + 5 * scale, 7 + 10 * scale, 7 + 11 * scale]);
  }
  graph.dispose();
  for (const s of [a, w, c, d]) b.free(s);
  // below the backend's own refusal: the fake fails a host copy in capture and invalidates it, as a card does
  const fake = koffi.load(process.env['XTUNER_LIBCUDA']!);
  const begin = fake.func('int cuStreamBeginCapture_v2(void *stream, int mode)');
  const htod = fake.func('int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)');
  const end = fake.func('int cuStreamEndCapture(void *stream, _Out_ void **graph)');
  const buf = b.alloc('float32', 1);
  assert.equal(begin(null, 2), 0);
  assert.equal(htod(buf.ptr, Buffer.alloc(4), 4, null), 900, 'CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED');
  assert.equal(end(null, [null]), 901, 'CUDA_ERROR_STREAM_CAPTURE_INVALIDATED');
  b.free(buf);
});

test('freed blocks are reused without the driver; out of memory says what to change', { skip: SKIP }, () => {
  const held = [100, 5000, 3_000_000].map((n) => b.alloc('float32', n));
  for (const s of held) b.free(s);
  const before = b.memoryStats().deviceAllocations;
  const again = [100, 5000, 3_000_000].map((n) => b.alloc('float32', n));
  assert.equal(b.memoryStats().deviceAllocations, before);
  for (const s of again) b.free(s);
  assert.throws(
    () => b.alloc('bfloat16', FAKE_MEM),
    (e: unknown) =>
      e instanceof XtunerError &&
      /out of memory on Fake GPU/.test(e.message) &&
      /a bfloat16 tensor of 67108864 elements/.test(e.message) &&
      /free of 64\.0 MiB/.test(e.message) &&
      /batch_size/.test(e.hint ?? ''),
  );
  assert.throws(() => b.free(again[0]!), /freed twice/);
});

test('gemm maps the row-major contract onto column-major cuBLAS', { skip: SKIP }, () => {
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    for (const dtype of ['float32', 'bfloat16'] as FloatDType[]) {
      const [m, n, k, batch, pad] = [5, 7, 3, 2, 1];
      const lda = (transA ? m : k) + pad;
      const ldb = (transB ? k : n) + pad;
      const ldc = n + pad;
      const aN = batch * (transA ? k : m) * lda;
      const bN = batch * (transB ? n : k) * ldb;
      const cN = batch * m * ldc;
      const vals = (len: number) => Float32Array.from({ length: len }, (_, i) => ((i * 7919) % 13) - 6);
      const args = <S>(a: S, bb: S, c: S) => ({
        transA, transB, m, n, k, alpha: 0.5, beta: 2, a, aOffset: 1, lda, aDtype: dtype, b: bb, bOffset: 1, ldb, bDtype: dtype,
        c, cOffset: 1, ldc, cDtype: 'float32' as FloatDType, batch, strideA: (transA ? k : m) * lda, strideB: (transB ? n : k) * ldb, strideC: m * ldc,
      });
      const ga = upload(dtype, vals(aN + 1));
      const gb = upload(dtype, vals(bN + 1));
      const gc = upload('float32', vals(cN + 1));
      b.gemm(args(ga, gb, gc));
      const ca = cpuBackend.alloc(dtype, aN + 1);
      cpuBackend.write(ca, dtype, 0, f32ToHost(vals(aN + 1), dtype));
      const cb = cpuBackend.alloc(dtype, bN + 1);
      cpuBackend.write(cb, dtype, 0, f32ToHost(vals(bN + 1), dtype));
      const cc = Float32Array.from(vals(cN + 1));
      cpuBackend.gemm(args(ca, cb, cc));
      assert.deepEqual(b.read(gc, 'float32', 0, cN + 1), cc, `transA=${transA} transB=${transB} ${dtype}`);
    }
  }
});

/** Calls every kernel of the contract with small valid arguments in `dtype` (weights in `wDtype`). */
function exerciseAll(be: Backend<CudaStorage>, dtype: FloatDType, wDtype: FloatDType): void {
  const f = (n: number, dt: DType = dtype) => be.alloc(dt, n);
  const ids = upload('int32', [0, 3, 1, 2]);
  const [x, y, z, w] = [f(4096), f(4096), f(4096), f(64, wDtype)];
  const [f32a, f32b, f32c] = [f(4096, 'float32'), f(4096, 'float32'), f(64, 'float32')];
  for (const op of ['add', 'sub', 'mul', 'div'] as BinaryOp[]) be.binary(op, x, [64, 1], y, [0, 1], z, [64, 64], dtype);
  for (const op of ['silu', 'exp'] as UnaryOp[]) {
    be.unary(op, x, y, 4096, dtype);
    be.unaryBackward(op, x, y, z, 4096, dtype);
  }
  be.scale(x, y, 4096, 2, dtype, null);
  be.axpy(x, y, 4096, 2, dtype);
  be.dropout(x, y, 4095, 0.1, ids, 7, dtype); // any int32 [2] as the seed
  be.reduceSum(x, y, 64, 64, 1, dtype);
  be.reduceSum(x, y, 4, 16, 64, dtype);
  be.swiglu(x, y, z, 4096, dtype);
  be.swigluBackward(x, y, z, x, y, 4096, dtype);
  be.softmax(x, y, 64, 64, dtype);
  be.softmaxBackward(x, y, z, 64, 64, dtype);
  be.rmsNorm(x, w, y, f32c, 64, 64, 1e-6, dtype, wDtype);
  be.rmsNormBackward(x, w, f32c, y, z, f32a, 64, 64, dtype, wDtype);
  be.layerNorm(x, w, w, y, f32c, f32b, 64, 64, 1e-5, dtype, wDtype);
  be.layerNormBackward(x, w, f32c, f32b, y, z, f32a, f32a, 64, 64, dtype, wDtype);
  be.rope(x, y, z, w, 1, 4, 2, 8, 0, false, dtype);
  be.embedding(x, ids, y, 4, 64, dtype);
  be.embeddingBackward(x, ids, f32a, 4, 64, dtype);
  be.crossEntropy(x, ids, f32c, y, 4, 64, -100, 0.25, dtype);
  be.gradNormClip([{ x, size: 4096, dtype }, { x: w, size: 64, dtype: wDtype }], 1, f32c, f32b);
  const adamw = { param: x, grad: y, expAvg: f32a, expAvgSq: z, size: 4096, stepLag: 0 };
  const state = be.alloc('int32', ADAMW_STATE_WORDS);
  be.write(state, 'int32', 0, adamwStateWords({ lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, step: 1 }));
  be.adamwStep([{ ...adamw, dtypes: { param: dtype, grad: dtype, expAvg: 'float32', expAvgSq: dtype } }], state, f32b);
  const u8 = f(4096, 'uint8');
  be.nf4Quantize(x, u8, f32c, u8, f32b, f32a, 4095, 64, 256, dtype);
  be.nf4Quantize(x, u8, f32c, null, null, null, 4095, 64, 256, dtype);
  be.nf4Dequantize(u8, u8, f32c, 0.5, y, 4095, 64, 256, dtype);
  be.nf4Dequantize(u8, null, f32c, 0, y, 2048, 64, 1, dtype);
  be.nf4Matvec({ packed: u8, absCodes: u8, absScales: f32b, offset: 0.5, blockSize: 64, absBlockSize: 256 }, x, y, z, 8, 64, 64, dtype);
  be.sampleArgmax(x, 4096, dtype, u8);
  be.topKCandidates(x, 4096, 40, 0.7, dtype, u8, 64);
  const shape = { B: 2, Tq: 8, Tk: 8, Hq: 4, Hkv: 2, D: 16, scale: 0.25, causal: true, cuSeqlens: Int32Array.from([0, 5, 16]), dtype };
  be.attention({ ...shape, q: x, k: y, v: z, out: x, lse: f32a });
  be.attentionBackward({ ...shape, q: x, k: y, v: z, out: x, lse: f32a, dout: y, dq: z, dk: x, dv: y });
  be.attention({ ...shape, D: 256, Tq: 2, Tk: 2, cuSeqlens: null, q: x, k: y, v: z, out: x, lse: f32a }); // opts in to > 48 KiB of shared memory
  be.attention({ ...shape, Tq: 1, cuSeqlens: null, kvLength: u8, q: x, k: y, v: z, out: x, lse: f32a }); // one query row: the decoding kernels
  for (const D of [32, 64, 96, 128]) { // the tensor-core kernels (16-bit floats), with and without packing
    const mma = { ...shape, B: 1, Hq: 2, Hkv: 1, D, cuSeqlens: D === 64 ? Int32Array.from([0, 3, 8]) : null };
    be.attention({ ...mma, q: x, k: y, v: z, out: x, lse: f32a });
    be.attentionBackward({ ...mma, q: x, k: y, v: z, out: x, lse: f32a, dout: y, dq: z, dk: x, dv: y });
    process.env['XTUNER_CUDA_ATTENTION'] = 'pipe'; // the pipelined forward
    be.attention({ ...mma, q: x, k: y, v: z, out: x, lse: f32a });
    delete process.env['XTUNER_CUDA_ATTENTION'];
  }
  for (const to of ['float32', 'bfloat16', 'int64', 'uint8'] as DType[]) if (to !== dtype) be.cast(x, dtype, f(4096, to), to, 4096);
  be.fill(f(10, 'int64'), 'int64', 0, 10, 3);
  for (const dt of ['uint8', 'float16', 'float32', 'int64'] as DType[]) be.copyStrided(f(64, dt), 0, [1, 8], f(64, dt), 0, [8, 1], [8, 8], dt);
}

test('profile: each kernel and cuBLAS call between two events, summed by name; refused during capture', { skip: SKIP }, () => {
  const gemmOf = (dtype: FloatDType) => {
    const [a, bb, c] = [upload(dtype, [1, 2, 3, 4]), upload(dtype, [1, 0, 0, 1]), upload('float32', [0, 0, 0, 0])];
    return () => b.gemm({
      transA: false, transB: false, m: 2, n: 2, k: 2, alpha: 1, beta: 0, a, aOffset: 0, lda: 2, aDtype: dtype, b: bb, bOffset: 0, ldb: 2, bDtype: dtype,
      c, cOffset: 0, ldc: 2, cDtype: 'float32', batch: 1, strideA: 4, strideB: 4, strideC: 4,
    });
  };
  const [f32, bf16] = [gemmOf('float32'), gemmOf('bfloat16')];
  const rows = b.profile(() => {
    f32();
    bf16();
    f32();
  });
  assert.deepEqual(rows.map((r) => [r.name, r.calls]).sort(), [['cublas bfloat16->float32', 1], ['cublas float32->float32', 2]]);
  for (const r of rows) assert.ok(r.ms >= 0 && Number.isFinite(r.ms));
  const graph = b.captureGraph(() => assert.throws(() => b.profile(f32), /during a CUDA graph capture/));
  graph.dispose();
});

test('every kernel of the build is launched with matching arguments and a valid configuration', { skip: SKIP_KERNELS }, () => {
  launchLog();
  const floats: FloatDType[] = ['float32', 'bfloat16', 'float16'];
  for (const dtype of floats) for (const wDtype of floats) exerciseAll(b, dtype, wDtype);
  const launched = new Set(launchLog());
  const all = fs
    .readdirSync(kernelDir())
    .filter((f) => f.endsWith('.params'))
    .flatMap((f) => fs.readFileSync(path.join(kernelDir(), f), 'utf8').split('\n'))
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
  assert.deepEqual(all.filter((k) => !launched.has(k)), [], 'kernels never launched');
});
