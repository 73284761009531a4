// CUDA launchers of flash-style attention (native/cuda/attention.cu). The host cuts the token
// axis into segments (b, start, qLen, kLen) (whole rows, or the cuSeqlens pieces, cut again at row
// ends) and lists tiles of query rows and of keys per segment; kernels never cross a segment.

import type { AttentionArgs, AttentionBackwardArgs, AttentionShape } from '../backend.ts';
import { dtypeBytes } from '../../tensor/dtype.ts';
import { XtunerError } from '../../errors.ts';
import { dtypeCode, sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

const WARPS = 8; // query rows per block in the forward and dQ kernels
const KEY_TILE = 32; // keys per tile (one per lane)
const MAX_HEAD_DIM = 256;

/** Segments as flat [b, start, qLen, kLen] quadruples; start is within the row. */
function segments(B: number, Tq: number, Tk: number, cuSeqlens: Int32Array | null): number[] {
  const out: number[] = [];
  if (cuSeqlens === null) {
    for (let b = 0; b < B; b++) out.push(b, 0, Tq, Tk);
    return out;
  }
  for (let i = 0; i + 1 < cuSeqlens.length; i++) {
    for (let s = cuSeqlens[i]!, e = cuSeqlens[i + 1]!; s < e; ) {
      const b = Math.floor(s / Tq);
      const end = Math.min(e, (b + 1) * Tq);
      out.push(b, s - b * Tq, end - s, end - s);
      s = end;
    }
  }
  return out;
}

/** [segment, first] pairs covering each segment's length at field `field` (2 = qLen, 3 = kLen) in steps. */
function tiles(segs: readonly number[], field: 2 | 3, step: number): number[] {
  const out: number[] = [];
  for (let g = 0; g < segs.length; g += 4) for (let i = 0; i < segs[g + field]!; i += step) out.push(g / 4, i);
  return out;
}

function checkShape(a: AttentionShape): void {
  if (a.D > MAX_HEAD_DIM) {
    throw new XtunerError(`attention on CUDA supports head dimensions up to ${MAX_HEAD_DIM}, got ${a.D}`, { hint: "use device: 'cpu' for this model" });
  }
  if (a.Hq % a.Hkv !== 0) throw new Error(`attention: ${a.Hq} query heads are not a multiple of ${a.Hkv} kv heads`);
}

export function attention(rt: CudaRuntime, a: AttentionArgs<CudaStorage>): void {
  checkShape(a);
  const segs = segments(a.B, a.Tq, a.Tk, a.cuSeqlens);
  const qt = tiles(segs, 2, WARPS);
  if (a.cuSeqlens !== null) {
    // rows outside every segment are written too (zeros), as the CPU backend leaves them
    rt.driver.memset(a.out.ptr, 1, 0, a.B * a.Tq * a.Hq * a.D * dtypeBytes(a.dtype));
    rt.driver.memset(a.lse.ptr, 4, 0, a.B * a.Hq * a.Tq);
  }
  if (qt.length === 0) return;
  const meta = rt.uploadI32(Int32Array.from([...segs, ...qt]), 'attention tiles');
  const smem = 4 * (2 * KEY_TILE * (a.D + 1) + WARPS * a.D);
  rt.launch('attention', `attn_fwd_${sfx(a.dtype)}`, [qt.length / 2, a.Hq], [32 * WARPS], smem, 'pppppppiiiiifi', [
    a.q.ptr, a.k.ptr, a.v.ptr, a.out.ptr, a.lse.ptr, meta.ptr, meta.ptr + 4 * segs.length,
    a.Tq, a.Tk, a.Hq, a.Hkv, a.D, a.scale, a.causal ? 1 : 0,
  ]);
  rt.free(meta);
}

export function attentionBackward(rt: CudaRuntime, a: AttentionBackwardArgs<CudaStorage>): void {
  checkShape(a);
  const { B, Tq, Tk, Hq, Hkv, D } = a;
  const s = sfx(a.dtype);
  const segs = segments(B, Tq, Tk, a.cuSeqlens);
  const qt = tiles(segs, 2, WARPS);
  const kt = tiles(segs, 3, KEY_TILE);
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
  const meta = rt.uploadI32(Int32Array.from([...segs, ...qt, ...kt]), 'attention tiles');
  const qTiles = meta.ptr + 4 * segs.length;
  const kTiles = qTiles + 4 * qt.length;
  if (rows > 0) {
    rt.launch('attention', `attn_bwd_delta_${s}`, [Math.ceil(rows / WARPS)], [32 * WARPS], 0, 'pppliii', [a.out.ptr, a.dout.ptr, delta.ptr, rows, Tq, Hq, D]);
  }
  const tail = [Tq, Tk, Hq, Hkv, D, a.scale, a.causal ? 1 : 0];
  if (qt.length > 0) {
    rt.launch('attention', `attn_bwd_dq_${s}`, [qt.length / 2, Hq], [32 * WARPS], 4 * (2 * KEY_TILE * (D + 1) + 2 * WARPS * D), 'pppppppppiiiiifi', [
      a.q.ptr, a.k.ptr, a.v.ptr, a.dout.ptr, a.lse.ptr, delta.ptr, a.dq.ptr, meta.ptr, qTiles, ...tail,
    ]);
  }
  if (kt.length > 0) {
    rt.launch('attention', `attn_bwd_dkdv_${s}`, [kt.length / 2, Hq], [32], 4 * (4 * KEY_TILE * (D + 1) + 2 * D), 'ppppppppppiiiiifi', [
      a.q.ptr, a.k.ptr, a.v.ptr, a.dout.ptr, a.lse.ptr, delta.ptr, dk32.ptr, dv32.ptr, meta.ptr, kTiles, ...tail,
    ]);
  }
  if (!f32) {
    for (const [src, dst] of [[dk32, a.dk], [dv32, a.dv]] as const) {
      rt.launch('elementwise', 'cast_any', [rt.blocksFor(kvSize)], [256], 0, 'pipil', [src.ptr, 0, dst.ptr, dtypeCode(a.dtype), kvSize]);
      rt.free(src);
    }
  }
  rt.free(delta);
  rt.free(meta);
}
