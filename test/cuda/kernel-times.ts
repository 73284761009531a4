// First timings of the CUDA kernels on the GPU they run on (not a test, not the peer benchmark):
// the two ceilings (device-to-device copy bandwidth, cuBLAS bf16 GEMM rate) and the fused kernels
// at training shapes, each as the median of several event-timed runs after a warm-up, on random
// data. Prints a table; writes JSON to $OUT/kernel-times.json when OUT is set.
//   node --import tsx test/cuda/kernel-times.ts

import fs from 'node:fs';
import path from 'node:path';
import { ADAMW_STATE_WORDS, adamwStateWords } from '../../src/backends/backend.ts';
import { cudaBackend, CudaStorage } from '../../src/backends/cuda/index.ts';
import { f32ToHost, type DType, type FloatDType } from '../../src/tensor/dtype.ts';

const b = cudaBackend();
const rows: { kernel: string; shape: string; ms: number; rate: string }[] = [];

const CHUNK = 1 << 22;
const chunks = new Map<string, ReturnType<typeof f32ToHost>>();
/** Random values in [lo, hi): one random chunk per (dtype, range), repeated (filling GBs in JS is slow). */
function random(dtype: DType, n: number, lo = -1, hi = 1): CudaStorage {
  const key = `${dtype} ${lo} ${hi}`;
  let chunk = chunks.get(key);
  if (!chunk) {
    const v = new Float32Array(CHUNK);
    for (let i = 0; i < CHUNK; i++) v[i] = lo + (hi - lo) * Math.random();
    chunks.set(key, (chunk = f32ToHost(v, dtype)));
  }
  const s = b.alloc(dtype, n);
  for (let o = 0; o < n; o += CHUNK) b.write(s, dtype, o, chunk.subarray(0, Math.min(CHUNK, n - o)));
  return s;
}

/** Median milliseconds of `fn` over `reps` event-timed runs after 2 warm-ups. */
function time(fn: () => void, reps = 7): number {
  fn();
  fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) t.push(b.time(fn));
  t.sort((x, y) => x - y);
  return t[reps >> 1]!;
}

function record(kernel: string, shape: string, ms: number, work: { bytes?: number; flops?: number }): void {
  const rate = work.flops ? `${(work.flops / ms / 1e9).toFixed(1)} TFLOP/s` : `${(work.bytes! / ms / 1e6).toFixed(0)} GB/s`;
  rows.push({ kernel, shape, ms: +ms.toFixed(4), rate });
  console.log(`${kernel.padEnd(22)} ${shape.padEnd(34)} ${ms.toFixed(3).padStart(9)} ms  ${rate}`);
}

console.log(`# ${b.info.name}, sm_${b.info.computeCapability.join('')}, driver ${b.info.driverVersion}`);

{ // ceiling 1: device-to-device copy, bytes read + written
  const n = 256 * 1024 * 1024; // 1 GiB of float32
  const x = random('float32', n);
  const y = b.alloc('float32', n);
  record('copy (d2d)', '1 GiB', time(() => b.cast(x, 'float32', y, 'float32', n)), { bytes: 8 * n });
  const sh = [4096, 4096 * 16];
  record('copyStrided transpose', `${sh.join('x')} f32`, time(() => b.copyStrided(x, 0, [1, sh[0]!], y, 0, [sh[1]!, 1], sh, 'float32')), { bytes: 8 * n });
  b.free(x);
  b.free(y);
}

for (const [dt, N] of [['bfloat16', 8192], ['float32', 4096]] as [FloatDType, number][]) { // ceiling 2: GEMM
  const a = random(dt, N * N);
  const w = random(dt, N * N);
  const c = b.alloc(dt, N * N);
  const g = {
    transA: false, transB: true, m: N, n: N, k: N, alpha: 1, beta: 0, a, aOffset: 0, lda: N, aDtype: dt, b: w, bOffset: 0, ldb: N, bDtype: dt,
    c, cOffset: 0, ldc: N, cDtype: dt, batch: 1, strideA: 0, strideB: 0, strideC: 0,
  };
  record(`gemm ${dt}`, `${N}^3 (x w^T)`, time(() => b.gemm(g)), { flops: 2 * N ** 3 });
  for (const s of [a, w, c]) b.free(s);
}

{ // fused kernels at a 2048-token training step of a 1.8B-like model
  const dt: FloatDType = 'bfloat16';
  const T = 4096, H = 2048, F = 8192;
  const x = random(dt, T * F), y = random(dt, T * F), z = b.alloc(dt, T * F), z2 = b.alloc(dt, T * F);
  const w = random('float32', H, 0.5, 1.5), rstd = b.alloc('float32', T), dw = b.alloc('float32', H);
  record('rmsNorm fwd', `[${T},${H}] bf16`, time(() => b.rmsNorm(x, w, z, rstd, T, H, 1e-6, dt, 'float32')), { bytes: 4 * T * H });
  record('rmsNorm bwd', `[${T},${H}] bf16`, time(() => b.rmsNormBackward(x, w, rstd, y, z, dw, T, H, dt, 'float32')), { bytes: 6 * T * H });
  record('swiglu fwd', `[${T},${F}] bf16`, time(() => b.swiglu(x, y, z, T * F, dt)), { bytes: 6 * T * F });
  record('swiglu bwd', `[${T},${F}] bf16`, time(() => b.swigluBackward(x, y, z, z, z2, T * F, dt)), { bytes: 10 * T * F });
  record('axpy', `${T * F} bf16`, time(() => b.axpy(x, z, T * F, 0.5, dt)), { bytes: 6 * T * F });
  const cs = random(dt, T * 128), sn = random(dt, T * 128);
  record('rope', `[1,${T},16,128] bf16`, time(() => b.rope(x, cs, sn, z, 1, T, 16, 128, 0, false, dt)), { bytes: 4 * T * 16 * 128 + 4 * T * 128 });
  // 16-byte chunks (2026-12-01): the other flat kernels of a bf16 step, and the scalar paths beside
  // them (views one element into their allocations: unaligned pointers) to show what the chunks gain
  record('add', `${T * F} bf16`, time(() => b.binary('add', x, [1], y, [1], z, [T * F], dt)), { bytes: 6 * T * F });
  const f32 = b.alloc('float32', T * F);
  record('cast bf16->f32', `${T * F}`, time(() => b.cast(x, dt, f32, 'float32', T * F)), { bytes: 6 * T * F });
  b.free(f32);
  const seed = b.alloc('int32', 2);
  record('dropout p=0.1', `${T * F} bf16`, time(() => b.dropout(x, z, T * F, 0.1, seed, 2, dt)), { bytes: 4 * T * F });
  b.free(seed);
  const Hq = 896; // Qwen2.5-0.5B hidden: 112 chunks of a 256-thread row block
  record('rmsNorm fwd', `[${T},${Hq}] bf16`, time(() => b.rmsNorm(x, w, z, rstd, T, Hq, 1e-6, dt, 'float32')), { bytes: 4 * T * Hq });
  record('rmsNorm bwd', `[${T},${Hq}] bf16`, time(() => b.rmsNormBackward(x, w, rstd, y, z, dw, T, Hq, dt, 'float32')), { bytes: 6 * T * Hq });
  const [xu, yu, zu] = [x, y, z].map((s) => new CudaStorage(s.ptr + 2, s.bytes - 2, null)) as [CudaStorage, CudaStorage, CudaStorage];
  const n1 = T * F - 1;
  record('swiglu fwd (scalar)', `${n1} bf16, unaligned`, time(() => b.swiglu(xu, yu, zu, n1, dt)), { bytes: 6 * n1 });
  record('axpy (scalar)', `${n1} bf16, unaligned`, time(() => b.axpy(xu, zu, n1, 0.5, dt)), { bytes: 6 * n1 });
  record('rmsNorm fwd (scalar)', `[${T},${H}] bf16, unaligned`, time(() => b.rmsNorm(xu, w, zu, rstd, T, H, 1e-6, dt, 'float32')), { bytes: 4 * T * H });
  for (const s of [x, y, z, z2, w, rstd, dw, cs, sn]) b.free(s);
}

{ // cross-entropy over a Qwen2-sized vocabulary, loss and gradient in one pass
  const N = 2048, V = 151_936, dt: FloatDType = 'bfloat16';
  const logits = random(dt, N * V, -5, 5), d = b.alloc(dt, N * V), loss = b.alloc('float32', N);
  const labels = b.alloc('int32', N);
  b.write(labels, 'int32', 0, Int32Array.from({ length: N }, () => Math.floor(Math.random() * V)));
  record('crossEntropy +grad', `[${N},${V}] bf16`, time(() => b.crossEntropy(logits, labels, loss, d, N, V, -100, 1 / N, dt)), { bytes: 4 * N * V });
  for (const s of [logits, d, loss, labels]) b.free(s);
}

// attention, causal, 2048 tokens, on each kernel set (attention-mma.cu with its two forwards, then attention.cu)
// (nosplit: the tensor-core backward with one dK/dV block per kv head, as before the GQA split)
const ATTENTION_SETS = [
  [16, 16, 128, 'mma'], [16, 2, 128, 'mma'], [14, 2, 64, 'mma'], [16, 16, 128, 'pipe'], [14, 2, 64, 'pipe'],
  [16, 2, 128, 'nosplit'], [14, 2, 64, 'nosplit'], [16, 16, 128, 'simt'], [14, 2, 64, 'simt'],
] as const;
for (const [Hq, Hkv, D, set] of ATTENTION_SETS) {
  if (set === 'mma') delete process.env['XTUNER_CUDA_ATTENTION'];
  else process.env['XTUNER_CUDA_ATTENTION'] = set;
  const B = 1, T = 2048, dt: FloatDType = 'bfloat16';
  const q = random(dt, B * T * Hq * D), k = random(dt, B * T * Hkv * D), v = random(dt, B * T * Hkv * D);
  const out = b.alloc(dt, B * T * Hq * D), lse = b.alloc('float32', B * Hq * T), dout = random(dt, B * T * Hq * D);
  const dq = b.alloc(dt, B * T * Hq * D), dk = b.alloc(dt, B * T * Hkv * D), dv = b.alloc(dt, B * T * Hkv * D);
  const shape = { B, Tq: T, Tk: T, Hq, Hkv, D, scale: 1 / Math.sqrt(D), causal: true, cuSeqlens: null, dtype: dt };
  const flops = 2 * 2 * B * Hq * T * T * D / 2; // QK^T and PV, causal half
  if (set !== 'nosplit') { // the unsplit set differs in its backward only
    record(`attention fwd ${set}`, `T=${T} Hq=${Hq} Hkv=${Hkv} D=${D}`, time(() => b.attention({ ...shape, q, k, v, out, lse }), 5), { flops });
  } else {
    b.attention({ ...shape, q, k, v, out, lse });
  }
  if (set !== 'pipe') { // the pipelined set differs in its forward only
    record(`attention bwd ${set}`, `T=${T} Hq=${Hq} Hkv=${Hkv} D=${D}`, time(() => b.attentionBackward({ ...shape, q, k, v, out, lse, dout, dq, dk, dv }), 3), { flops: 2.5 * flops });
  }
  for (const s of [q, k, v, out, lse, dout, dq, dk, dv]) b.free(s);
}
delete process.env['XTUNER_CUDA_ATTENTION'];

// a decoded token's attention over a KV cache of 4096 rows filled to 1000 (the decoding kernels: keys split over blocks)
for (const [Hq, Hkv, D] of [[14, 2, 64], [32, 32, 128], [32, 8, 128]] as const) {
  const cap = 4096, len = 1000, dt: FloatDType = 'bfloat16';
  const q = random(dt, Hq * D), k = random(dt, cap * Hkv * D), v = random(dt, cap * Hkv * D);
  const out = b.alloc(dt, Hq * D), lse = b.alloc('float32', Hq), kvLength = b.alloc('int32', 1);
  b.write(kvLength, 'int32', 0, Int32Array.of(len));
  const shape = { B: 1, Tq: 1, Tk: cap, Hq, Hkv, D, scale: 1 / Math.sqrt(D), causal: true, cuSeqlens: null, dtype: dt };
  record('attention decode', `kv ${len} of ${cap}, Hq=${Hq} Hkv=${Hkv} D=${D}`, time(() => b.attention({ ...shape, kvLength, q, k, v, out, lse }), 20), { bytes: 2 * 2 * len * Hkv * D });
  for (const s of [q, k, v, out, lse, kvLength]) b.free(s);
}

{ // NF4 with double quantisation of a Llama-7B MLP weight (QLoRA: quantised once at load, dequantised per GEMM)
  const [out, inp] = [11008, 4096], n = out * inp, nBlocks = n / 64, dt: FloatDType = 'bfloat16';
  const w = random(dt, n, -0.05, 0.05), y = b.alloc(dt, n), packed = b.alloc('uint8', n / 2);
  const absmax = b.alloc('float32', nBlocks), codes = b.alloc('uint8', nBlocks), scales = b.alloc('float32', Math.ceil(nBlocks / 256)), offset = b.alloc('float32', 1);
  // bytes: weights read, codes written, absmax written and read twice, absmax codes written (and back)
  record('nf4Quantize', `[${out},${inp}] bf16`, time(() => b.nf4Quantize(w, packed, absmax, codes, scales, offset, n, 64, 256, dt)), { bytes: 2.5 * n + (12 * n) / 64 + n / 64 });
  record('nf4Dequantize', `[${out},${inp}] bf16`, time(() => b.nf4Dequantize(packed, codes, scales, 0.01, y, n, 64, 256, dt)), { bytes: 2.5 * n + n / 64 });
  // one decoded token: straight from the 4-bit weight, against dequantising it for a GEMM (the path of more rows)
  const x = random(dt, inp), yv = b.alloc(dt, out);
  const nf4 = { packed, absCodes: codes, absScales: scales, offset: 0.01, blockSize: 64, absBlockSize: 256 };
  record('nf4Matvec 1 row', `[${out},${inp}] bf16`, time(() => b.nf4Matvec(nf4, x, null, yv, 1, out, inp, dt)), { bytes: 0.5 * n + n / 64 });
  const g = {
    transA: false, transB: true, m: 1, n: out, k: inp, alpha: 1, beta: 0, a: x, aOffset: 0, lda: inp, aDtype: dt, b: y, bOffset: 0, ldb: inp, bDtype: dt,
    c: yv, cOffset: 0, ldc: out, cDtype: dt, batch: 1, strideA: 0, strideB: 0, strideC: 0,
  };
  record('nf4Dequantize + gemm 1 row', `[${out},${inp}] bf16`, time(() => { b.nf4Dequantize(packed, codes, scales, 0.01, y, n, 64, 256, dt); b.gemm(g); }), { bytes: 0.5 * n + n / 64 });
  for (const s of [w, y, packed, absmax, codes, scales, offset, x, yv]) b.free(s);
}

// AdamW's step state at step 3 (lr, betas, step: what the kernel reads)
const state = b.alloc('int32', ADAMW_STATE_WORDS);
b.write(state, 'int32', 0, adamwStateWords({ lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 3 }));

{ // AdamW over 100M float32 parameters
  const n = 100_000_000;
  const p = random('float32', n), g = random('float32', n, -1e-3, 1e-3), m = b.alloc('float32', n), v = b.alloc('float32', n);
  const dtypes = { param: 'float32', grad: 'float32', expAvg: 'float32', expAvgSq: 'float32' } as const;
  const t = [{ param: p, grad: g, expAvg: m, expAvgSq: v, size: n, dtypes, stepLag: 0 }];
  record('adamw f32', `${n}`, time(() => b.adamwStep(t, state, null), 5), { bytes: 28 * n });
  for (const s of [p, g, m, v]) b.free(s);
}

{ // the optimizer step of Qwen2.5-0.5B with LoRA r=64 on every linear: 336 float32 tensors, 35 M values
  const r = 64, H = 896, I = 4864, KV = 128;
  const linears = [[H, H], [H, KV], [H, KV], [H, H], [H, I], [H, I], [I, H]]; // [in, out]: q k v o gate up down
  const sizes = Array.from({ length: 24 }, () => linears.flatMap(([i, o]) => [r * i!, o! * r])).flat(); // lora_A [r, in], lora_B [out, r]
  const total = sizes.reduce((a, n) => a + n, 0);
  const dtypes = { param: 'float32', grad: 'float32', expAvg: 'float32', expAvgSq: 'float32' } as const;
  const t = sizes.map((n) => ({ param: random('float32', n), grad: random('float32', n, -1e-3, 1e-3), expAvg: b.alloc('float32', n), expAvgSq: b.alloc('float32', n), size: n, dtypes, stepLag: 0 }));
  const norm = b.alloc('float32', 1), coef = b.alloc('float32', 1);
  const spans = t.map((e) => ({ x: e.grad, size: e.size, dtype: 'float32' as const }));
  record('grad norm + clip coef', `${sizes.length} LoRA tensors, ${total}`, time(() => b.gradNormClip(spans, 1, norm, coef), 5), { bytes: 4 * total });
  record('adamw (clipped)', `${sizes.length} LoRA tensors, ${total}`, time(() => b.adamwStep(t, state, coef), 5), { bytes: 28 * total });
  for (const e of t) for (const s of [e.param, e.grad, e.expAvg, e.expAvgSq]) b.free(s);
  b.free(norm);
  b.free(coef);
}

const stats = b.memoryStats();
console.log(`# peak allocated ${(stats.peakAllocatedBytes / 2 ** 30).toFixed(2)} GiB, reserved ${(stats.peakReservedBytes / 2 ** 30).toFixed(2)} GiB, ${stats.deviceAllocations} cuMemAlloc calls`);
if (process.env['OUT']) {
  const file = path.join(process.env['OUT'], 'kernel-times.json');
  fs.writeFileSync(`${file}.tmp-${process.pid}`, JSON.stringify({ device: b.info, rows, memory: stats }, null, 1));
  fs.renameSync(`${file}.tmp-${process.pid}`, file);
}
