// CUDA launchers of flash-style attention. The token axis is cut into segments (b, start, qLen,
// kLen) (whole rows, or the cuSeqlens pieces, cut again at row ends) with tiles of query rows and of
// keys per segment, built on the device (attn_tiles) into grids sized for the worst case, so a call
// uploads nothing and launches the same grids whatever the boundaries; kernels never cross a
// segment. Two kernel sets share that contract: native/cuda/attention-mma.cu (tensor cores:
// bf16/f16, head dims MMA_HEAD_DIMS, 16-byte aligned tensors) and native/cuda/attention.cu (CUDA
// cores: everything else). A forward of one query row per sequence (decoding) takes the decoding
// kernels of attention.cu instead, which split the keys over blocks.

import type { AttentionArgs, AttentionBackwardArgs, AttentionShape } from '../backend.ts';
import { dtypeBytes } from '../../tensor/dtype.ts';
import { XtunerError } from '../../errors.ts';
import { dtypeCode, sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

const WARPS = 8; // query rows per block in the forward and dQ kernels
const KEY_TILE = 32; // keys per tile (one per lane)
const MAX_HEAD_DIM = 256;
// tensor-core kernels (attention-mma.cu): block shapes and the head dims they are built for
const MMA_HEAD_DIMS: readonly number[] = [32, 64, 96, 128];
const MMA_ROWS = 64; // query rows per block (forward, dQ)
const MMA_KEYS = 64; // keys per tile in the forward, per block in dK/dV
const MMA_DQ_KEYS = 32; // keys per tile in dQ
const MMA_DKDV_ROWS = 32; // query rows per step in dK/dV
/** dK/dV blocks per SM to aim for before the GQA group is split over blocks (2 to 4 fit on an SM). */
const MMA_DKDV_BLOCKS_PER_SM = 4;
const MMA_THREADS = 128;
const MMA_PAD = 8; // elements added to each shared row
const TILE_THREADS = 128; // attn_tiles: one block
const DECODE_KEYS = 32; // keys per block of the decoding kernels (KT in attention.cu)
const DECODE_THREADS = 128;

/**
 * Whether every token lies in a segment, so the kernels write every row of the outputs and no
 * memset is needed: always without cuSeqlens, and with it whenever it spans [0, B*T] (the op checks
 * that it does; a backend call may leave tokens outside every sample).
 */
function coversAll(a: AttentionShape): boolean {
  const cu = a.cuSeqlens;
  return cu === null || (cu[0] === 0 && cu[cu.length - 1] === a.B * a.Tq);
}

/**
 * The segments and tile lists of one call, built on the device by attn_tiles from the call's
 * cuSeqlens on the device (copied there when the caller passed none: small tests, generation).
 * The grids are sized for the worst case of that many boundaries, so they depend only on the
 * shapes and the capacity of cuSeqlens, never on where the boundaries fall:
 *   segments <= samples + B - 1 (each row end inside a sample cuts it once more)
 *   tiles of `step` rows = sum over segments of ceil(len / step) <= (B*T + segments * (step - 1)) / step
 * (about ceil(T/step) + samples per row, tileBound); the entries past the real tiles send their
 * blocks home. Without cuSeqlens the segments are the B rows and the counts exact. kStep 0: no key
 * tiles. With a KV cache's length on the device (a forward's kvLength) each row's segment has that
 * many keys; the grids do not depend on it.
 */
function tileLists(rt: CudaRuntime, a: AttentionArgs<CudaStorage> | AttentionBackwardArgs<CudaStorage>, qStep: number, kStep: number): TileLists {
  const { B, Tq, Tk } = a;
  let cu: CudaStorage | null = null;
  let nCu = 0;
  let owned = false;
  if (a.cuSeqlens !== null) {
    if (a.cuSeqlensOnDevice) {
      cu = a.cuSeqlensOnDevice.storage;
      nCu = a.cuSeqlensOnDevice.length;
    } else {
      cu = rt.uploadI32(a.cuSeqlens, 'attention cuSeqlens');
      nCu = a.cuSeqlens.length;
      owned = true;
    }
  }
  const { segs, tiles: qBlocks } = tileBound(B, Tq, nCu, qStep);
  const kBlocks = kStep > 0 ? tileBound(B, Tk, nCu, kStep).tiles : 0;
  // segs [segs][4] | qTiles [qBlocks][2] | kTiles [kBlocks][2] | scratch [segs + 1][2]
  const n = 4 * segs + 2 * qBlocks + 2 * kBlocks + 2 * (segs + 1);
  const meta = rt.allocRaw(4 * n, () => `attention tile lists (${n} int32)`);
  const kvLength = 'kvLength' in a ? (a.kvLength?.ptr ?? 0) : 0;
  rt.launch('attention', 'attn_tiles', [1], [TILE_THREADS], 0, 'piiiipiiiiip', [cu?.ptr ?? 0, nCu, B, Tq, Tk, meta.ptr, segs, qStep, qBlocks, kStep, kBlocks, kvLength]);
  if (owned) rt.free(cu!);
  const qTiles = meta.ptr + 4 * 4 * segs;
  return { meta, qTiles, kTiles: qTiles + 4 * 2 * qBlocks, qBlocks, kBlocks };
}

/**
 * Most segments and most tiles of `step` rows a call can have: B rows of T tokens cut by nCu
 * boundaries (nCu 0: whole rows, exact). Depends on the shapes and nCu only.
 */
export function tileBound(B: number, T: number, nCu: number, step: number): { segs: number; tiles: number } {
  if (nCu === 0) return { segs: B, tiles: B * Math.ceil(T / step) };
  const segs = nCu - 1 + B - 1;
  return { segs, tiles: Math.floor((B * T + segs * (step - 1)) / step) };
}

interface TileLists {
  meta: CudaStorage; // segments first: the kernels' `segs` argument is meta.ptr
  qTiles: number; // device address of the query tile list
  kTiles: number;
  qBlocks: number; // grid sizes (worst case)
  kBlocks: number;
}

function checkShape(a: AttentionShape): void {
  if (a.D > MAX_HEAD_DIM) {
    throw new XtunerError(`attention on CUDA supports head dimensions up to ${MAX_HEAD_DIM}, got ${a.D}`, { hint: "run this model on the CPU (--device cpu, or device: 'cpu' in a config)" });
  }
  if (a.Hq % a.Hkv !== 0) throw new Error(`attention: ${a.Hq} query heads are not a multiple of ${a.Hkv} kv heads`);
}

/**
 * Whether the tensor-core kernels take this call: 16-bit floats, a head dim they are built for, and
 * every tensor 16-byte aligned (they move 16-byte chunks). XTUNER_CUDA_ATTENTION=simt forces the
 * CUDA-core kernels, =pipe the tensor-core forward with cp.async tiles (version 4, untimed as yet),
 * =nosplit the dK/dV pass without its GQA split, for comparing them on one card.
 */
function useMma(a: AttentionShape, tensors: readonly CudaStorage[]): boolean {
  return (
    (a.dtype === 'bfloat16' || a.dtype === 'float16') &&
    MMA_HEAD_DIMS.includes(a.D) &&
    tensors.every((t) => t.ptr % 16 === 0) &&
    process.env['XTUNER_CUDA_ATTENTION'] !== 'simt'
  );
}

/** Dynamic shared memory of the tensor-core kernels: `rows` rows of D + PAD 16-bit values, plus `extra` bytes. */
function mmaSmem(D: number, rows: number, extra = 0): number {
  return 2 * rows * (D + MMA_PAD) + extra;
}

export function attention(rt: CudaRuntime, a: AttentionArgs<CudaStorage>): void {
  checkShape(a);
  if (a.Tq === 1 && a.cuSeqlens === null) {
    attentionDecode(rt, a);
    return;
  }
  const mma = useMma(a, [a.q, a.k, a.v, a.out]);
  if (!coversAll(a)) {
    // rows outside every segment are written too (zeros), as the CPU backend leaves them
    rt.driver.memset(a.out.ptr, 1, 0, a.B * a.Tq * a.Hq * a.D * dtypeBytes(a.dtype));
    rt.driver.memset(a.lse.ptr, 4, 0, a.B * a.Hq * a.Tq);
  }
  if (a.B * a.Tq === 0) return;
  const t = tileLists(rt, a, mma ? MMA_ROWS : WARPS, 0);
  const io = [a.q.ptr, a.k.ptr, a.v.ptr, a.out.ptr, a.lse.ptr, t.meta.ptr, t.qTiles, a.Tq, a.Tk, a.Hq, a.Hkv];
  if (mma) {
    const pipe = process.env['XTUNER_CUDA_ATTENTION'] === 'pipe' ? 'pipe_' : '';
    rt.launch('attention-mma', `attn_mma_fwd_${pipe}${sfx(a.dtype)}_d${a.D}`, [t.qBlocks, a.Hq], [MMA_THREADS], mmaSmem(a.D, MMA_ROWS + 2 * MMA_KEYS), 'pppppppiiiifi', [
      ...io, a.scale, a.causal ? 1 : 0,
    ]);
  } else {
    const smem = 4 * (2 * KEY_TILE * (a.D + 1) + WARPS * a.D);
    rt.launch('attention', `attn_fwd_${sfx(a.dtype)}`, [t.qBlocks, a.Hq], [32 * WARPS], smem, 'pppppppiiiiifi', [...io, a.D, a.scale, a.causal ? 1 : 0]);
  }
  rt.free(t.meta);
}

/**
 * One query row per sequence (a decoded token): the keys cut into chunks of DECODE_KEYS, one block
 * per (chunk, kv head, row) over a grid sized by the capacity Tk (chunks past kvLength leave at
 * once), then the chunks' partial softmax sums merged per query head. Every filled key counts:
 * causal or not, one row sees them all.
 */
function attentionDecode(rt: CudaRuntime, a: AttentionArgs<CudaStorage>): void {
  const { B, Tk, Hq, Hkv, D } = a;
  const chunks = Math.ceil(Tk / DECODE_KEYS);
  const group = Hq / Hkv;
  const part = rt.scratchF32(B * Hq * chunks * (D + 2), `the partial sums of a decoded token's attention (${B * Hq} rows x ${chunks} chunks)`);
  const s = sfx(a.dtype);
  if (chunks > 0) {
    const smem = 4 * (group * D + 2 * DECODE_KEYS * (D + 1) + group * DECODE_KEYS);
    rt.launch('attention', `attn_decode_partial_${s}`, [chunks, Hkv, B], [DECODE_THREADS], smem, 'pppppiiiif', [
      a.q.ptr, a.k.ptr, a.v.ptr, part.ptr, a.kvLength?.ptr ?? 0, Tk, Hq, Hkv, D, a.scale,
    ]);
  }
  rt.launch('attention', `attn_decode_combine_${s}`, [B * Hq], [Math.min(256, 32 * Math.ceil(D / 32))], 0, 'pppii', [part.ptr, a.out.ptr, a.lse.ptr, chunks, D]);
  rt.free(part);
}

export function attentionBackward(rt: CudaRuntime, a: AttentionBackwardArgs<CudaStorage>): void {
  checkShape(a);
  if (useMma(a, [a.q, a.k, a.v, a.out, a.dout, a.dq, a.dk, a.dv])) {
    attentionBackwardMma(rt, a);
    return;
  }
  const { B, Tq, Tk, Hq, Hkv, D } = a;
  const s = sfx(a.dtype);
  const f32 = a.dtype === 'float32';
  // dK, dV accumulate atomically in float32: the outputs themselves when float32, else scratch
  const kvSize = B * Tk * Hkv * D;
  const dk32 = f32 ? a.dk : rt.scratchF32(kvSize, `float32 dK of attention (${kvSize} elements)`);
  const dv32 = f32 ? a.dv : rt.scratchF32(kvSize, `float32 dV of attention (${kvSize} elements)`);
  rt.driver.memset(dk32.ptr, 4, 0, kvSize);
  rt.driver.memset(dv32.ptr, 4, 0, kvSize);
  rt.driver.memset(a.dq.ptr, 1, 0, B * Tq * Hq * D * dtypeBytes(a.dtype));
  const rows = B * Tq * Hq;
  const delta = rt.scratchF32(rows, `attention backward delta (${rows} floats)`);
  launchDelta(rt, a, delta);
  const t = tileLists(rt, a, WARPS, KEY_TILE);
  const tail = [Tq, Tk, Hq, Hkv, D, a.scale, a.causal ? 1 : 0];
  if (t.qBlocks > 0) {
    rt.launch('attention', `attn_bwd_dq_${s}`, [t.qBlocks, Hq], [32 * WARPS], 4 * (2 * KEY_TILE * (D + 1) + 2 * WARPS * D), 'pppppppppiiiiifi', [
      a.q.ptr, a.k.ptr, a.v.ptr, a.dout.ptr, a.lse.ptr, delta.ptr, a.dq.ptr, t.meta.ptr, t.qTiles, ...tail,
    ]);
  }
  if (t.kBlocks > 0) {
    rt.launch('attention', `attn_bwd_dkdv_${s}`, [t.kBlocks, Hq], [32], 4 * (4 * KEY_TILE * (D + 1) + 2 * D), 'ppppppppppiiiiifi', [
      a.q.ptr, a.k.ptr, a.v.ptr, a.dout.ptr, a.lse.ptr, delta.ptr, dk32.ptr, dv32.ptr, t.meta.ptr, t.kTiles, ...tail,
    ]);
  }
  if (!f32) {
    for (const [src, dst] of [[dk32, a.dk], [dv32, a.dv]] as const) {
      rt.launch('elementwise', 'cast_any', [rt.blocksFor(kvSize)], [256], 0, 'pipil', [src.ptr, 0, dst.ptr, dtypeCode(a.dtype), kvSize]);
      rt.free(src);
    }
  }
  rt.free(delta);
  rt.free(t.meta);
}

/** delta = rowsum(dO * O) [B,Hq,Tq], which both backward kernel sets read. */
function launchDelta(rt: CudaRuntime, a: AttentionBackwardArgs<CudaStorage>, delta: CudaStorage): void {
  const rows = a.B * a.Tq * a.Hq;
  if (rows === 0) return;
  rt.launch('attention', `attn_bwd_delta_${sfx(a.dtype)}`, [Math.ceil(rows / WARPS)], [32 * WARPS], 0, 'pppliii', [
    a.out.ptr, a.dout.ptr, delta.ptr, rows, a.Tq, a.Hq, a.D,
  ]);
}

/** The tensor-core backward: dQ over query tiles, dK and dV over key tiles of each kv head, or of parts of its group (no atomics). */
function attentionBackwardMma(rt: CudaRuntime, a: AttentionBackwardArgs<CudaStorage>): void {
  const { B, Tq, Tk, Hq, Hkv, D } = a;
  const name = `${sfx(a.dtype)}_d${D}`;
  if (!coversAll(a)) {
    // rows outside every segment get zero gradients; the kernels write every row inside one
    const bytes = dtypeBytes(a.dtype);
    rt.driver.memset(a.dq.ptr, 1, 0, B * Tq * Hq * D * bytes);
    rt.driver.memset(a.dk.ptr, 1, 0, B * Tk * Hkv * D * bytes);
    rt.driver.memset(a.dv.ptr, 1, 0, B * Tk * Hkv * D * bytes);
  }
  const rows = B * Tq * Hq;
  const delta = rt.scratchF32(rows, `attention backward delta (${rows} floats)`);
  launchDelta(rt, a, delta);
  const t = tileLists(rt, a, MMA_ROWS, MMA_KEYS);
  const inputs = [a.q.ptr, a.k.ptr, a.v.ptr, a.dout.ptr, a.lse.ptr, delta.ptr];
  const tail = [Tq, Tk, Hq, Hkv, a.scale, a.causal ? 1 : 0];
  if (t.qBlocks > 0) {
    rt.launch('attention-mma', `attn_mma_bwd_dq_${name}`, [t.qBlocks, Hq], [MMA_THREADS], mmaSmem(D, 2 * MMA_ROWS + 2 * MMA_DQ_KEYS), 'pppppppppiiiifi', [
      ...inputs, a.dq.ptr, t.meta.ptr, t.qTiles, ...tail,
    ]);
  }
  if (t.kBlocks > 0) {
    // XTUNER_CUDA_ATTENTION=nosplit: one block per kv head, for timing both on a card
    const sms = process.env['XTUNER_CUDA_ATTENTION'] === 'nosplit' ? 0 : rt.driver.device.multiprocessors;
    const { per, splits } = dkdvSplit(t.kBlocks * Hkv, Hq / Hkv, sms);
    const kvSize = B * Tk * Hkv * D;
    const part = splits > 1 ? rt.scratchF32(2 * splits * kvSize, `attention dK and dV partial sums (${splits} x ${kvSize} x 2 floats)`) : null;
    // keys outside every segment: zero partial sums, which the sum writes into dk and dv
    if (part && !coversAll(a)) rt.driver.memset(part.ptr, 4, 0, 2 * splits * kvSize);
    const smem = mmaSmem(D, 2 * MMA_KEYS + 2 * MMA_DKDV_ROWS, 2 * 4 * MMA_DKDV_ROWS); // + lse and delta of a step
    rt.launch('attention-mma', `attn_mma_bwd_dkdv_${name}`, [t.kBlocks, Hkv * splits], [MMA_THREADS], smem, 'ppppppppppiiiifiip', [
      ...inputs, a.dk.ptr, a.dv.ptr, t.meta.ptr, t.kTiles, ...tail, per, part?.ptr ?? 0,
    ]);
    if (part) {
      rt.launch('attention-mma', `attn_mma_dkdv_sum_${sfx(a.dtype)}`, [rt.blocksFor(kvSize)], [256], 0, 'piilpp', [part.ptr, splits, D, kvSize, a.dk.ptr, a.dv.ptr]);
      rt.free(part);
    }
  }
  rt.free(delta);
  rt.free(t.meta);
}

/**
 * How the dK/dV pass divides each GQA group of query heads over blocks: whole (splits 1: each
 * block writes its keys' gradients) while a kv head per key tile gives MMA_DKDV_BLOCKS_PER_SM
 * blocks per SM, else in `splits` parts of `per` heads, as few as fill the GPU, whose float32
 * partial sums a second kernel adds. `blocks`: key tiles x kv heads.
 */
export function dkdvSplit(blocks: number, group: number, sms: number): { per: number; splits: number } {
  const want = Math.min(group, Math.max(1, Math.ceil((MMA_DKDV_BLOCKS_PER_SM * sms) / blocks)));
  const per = Math.ceil(group / want);
  return { per, splits: Math.ceil(group / per) };
}
