// CUDA graphs over the real kernels (a GPU, or the emulator of test/cuda/fake): a few elementwise
// ops and a GEMM on fixed input storages captured once, replayed after the inputs are rewritten in
// place, give the numbers of running the same ops directly (bit for bit: the same kernels on the
// same data); replays allocate nothing and the outputs stay at their addresses; dispose hands the
// graph's pool back; a host copy, read or wait inside the capture is an XtunerError naming it, and
// leaves the backend able to capture again.

import assert from 'node:assert/strict';
import test from 'node:test';
import { cudaBackend, type CudaStorage } from '../../src/backends/cuda/index.ts';
import { XtunerError } from '../../src/errors.ts';
import { SKIP, uniform } from './helpers.ts';

const M = 8;
const K = 16;
const N = 24;
const REPLAYS = 3;

/** y = silu(a @ w + bias) * a2, a [M, K], w [K, N], bias [N] broadcast over rows, a2 [M, N]: f32 storages. */
function ops(x: { a: CudaStorage; w: CudaStorage; bias: CudaStorage; a2: CudaStorage }): CudaStorage {
  const b = cudaBackend();
  const h = b.allocUninit('float32', M * N); // [M, N]
  b.gemm({
    transA: false, transB: false, m: M, n: N, k: K, alpha: 1, beta: 0,
    a: x.a, aOffset: 0, lda: K, aDtype: 'float32', b: x.w, bOffset: 0, ldb: N, bDtype: 'float32',
    c: h, cOffset: 0, ldc: N, cDtype: 'float32', batch: 1, strideA: 0, strideB: 0, strideC: 0,
  });
  const hb = b.allocUninit('float32', M * N);
  b.binary('add', h, [N, 1], x.bias, [0, 1], hb, [M, N], 'float32');
  b.free(h); // freed inside the capture: its block is reused below, stream-ordered
  const s = b.allocUninit('float32', M * N);
  b.unary('silu', hb, s, M * N, 'float32');
  b.free(hb);
  const y = b.allocUninit('float32', M * N);
  b.binary('mul', s, [N, 1], x.a2, [N, 1], y, [M, N], 'float32');
  b.free(s);
  return y;
}

function inputs() {
  const b = cudaBackend();
  const make = (n: number) => b.alloc('float32', n);
  return { a: make(M * K), w: make(K * N), bias: make(N), a2: make(M * N) };
}

function writeRandom(x: ReturnType<typeof inputs>): void {
  const b = cudaBackend();
  b.write(x.a, 'float32', 0, uniform('float32', M * K));
  b.write(x.w, 'float32', 0, uniform('float32', K * N));
  b.write(x.bias, 'float32', 0, uniform('float32', N));
  b.write(x.a2, 'float32', 0, uniform('float32', M * N));
}

test('a captured GEMM and elementwise ops replay to the numbers of running them directly', { skip: SKIP }, () => {
  const b = cudaBackend();
  const x = inputs();
  writeRandom(x);
  b.free(ops(x)); // warm-up: modules, cuBLAS and the allocator's cache, as before any capture
  const before = b.memoryStats();
  let y!: CudaStorage;
  const graph = b.captureGraph(() => {
    y = ops(x);
  });
  const captured = b.memoryStats();
  assert.equal(captured.deviceAllocations, before.deviceAllocations, 'the warm cache served the capture');
  assert.ok(captured.graphPoolBytes > 0, 'the capture allocated from its pool');
  for (let r = 0; r < REPLAYS; r++) {
    writeRandom(x); // new inputs, same storages
    const direct = ops(x);
    const want = b.read(direct, 'float32', 0, M * N);
    b.free(direct);
    b.write(y, 'float32', 0, new Float32Array(M * N).fill(Number.NaN)); // the replay must write all of y
    graph.launch();
    assert.deepEqual(b.read(y, 'float32', 0, M * N), want, `replay ${r}`);
  }
  const after = b.memoryStats();
  assert.equal(after.deviceAllocations, captured.deviceAllocations, 'replays allocate nothing');
  assert.equal(after.graphPoolBytes, captured.graphPoolBytes);
  // the pool's blocks are the graph's: an allocation of y's class outside the graph gets another block
  const other = b.allocUninit('float32', M * N);
  assert.notEqual(other.ptr, y.ptr);
  b.free(other);
  b.free(y); // back to the graph's pool, not to the shared cache
  graph.dispose();
  assert.equal(b.memoryStats().graphPoolBytes, 0, 'dispose hands the pool back');
  for (const s of Object.values(x)) b.free(s);
});

test('a host copy, read or wait during capture is an XtunerError naming it; the next capture works', { skip: SKIP }, () => {
  const b = cudaBackend();
  const s = b.alloc('float32', 4);
  const cases: [string, () => void, RegExp][] = [
    ['write', () => b.write(s, 'float32', 0, new Float32Array(4)), /the write op copies host memory to the device during CUDA graph capture \(called from test\/cuda\/graph\.test\.ts:\d+\)/],
    ['read', () => b.read(s, 'float32', 0, 4), /the read op reads device memory back to the host during CUDA graph capture/],
    ['synchronize', () => b.synchronize(), /synchronize waits for the device during CUDA graph capture/],
  ];
  for (const [what, op, message] of cases) {
    const pool = b.memoryStats().graphPoolBytes;
    assert.throws(() => b.captureGraph(() => {
      b.fill(s, 'float32', 0, 4, 1);
      op();
    }), (e: unknown) => e instanceof XtunerError && message.test(e.message), what);
    assert.equal(b.memoryStats().graphPoolBytes, pool, `${what}: the abandoned capture's pool is released`);
  }
  const g = b.captureGraph(() => b.fill(s, 'float32', 0, 4, 2));
  b.write(s, 'float32', 0, new Float32Array(4));
  g.launch();
  assert.deepEqual([...b.read(s, 'float32', 0, 4)], [2, 2, 2, 2]);
  g.dispose();
  b.free(s);
});
