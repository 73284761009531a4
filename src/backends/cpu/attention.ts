// CPU scaled dot-product attention, forward and backward, flash-style in blocks of query rows:
// per (segment, head, block of rows) the scores S = scale * Q K^T of that block only are formed by
// sgemm straight from the [B,T,H,D] layouts (leading dimension H*D, no copies), softmaxed in place
// with the causal/segment mask, and multiplied by V. The backward recomputes P from the saved
// log-sum-exp. GQA: query head h reads kv head floor(h / (Hq / Hkv)); dK and dV accumulate over
// the heads of a group. Segments come from cuSeqlens (cut also at row ends) or are whole rows.

import type { AttentionArgs, AttentionBackwardArgs } from '../backend.ts';
import { sgemm } from './gemm.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

const BLOCK_ROWS = 64;

/** Segments as flat [b, start, qLen, kLen] quadruples; start is within the row. `kLen`: keys per whole row (a KV cache's filled length), default Tk. */
export function segments(B: number, Tq: number, Tk: number, cuSeqlens: Int32Array | null, kLen = Tk): Int32Array {
  if (cuSeqlens === null) {
    const out = new Int32Array(B * 4);
    for (let b = 0; b < B; b++) out.set([b, 0, Tq, kLen], b * 4);
    return out;
  }
  const list: number[] = [];
  for (let i = 0; i + 1 < cuSeqlens.length; i++) {
    let s = cuSeqlens[i]!;
    const e = cuSeqlens[i + 1]!;
    while (s < e) {
      const b = Math.floor(s / Tq);
      const end = Math.min(e, (b + 1) * Tq);
      list.push(b, s - b * Tq, end - s, end - s);
      s = end;
    }
  }
  return Int32Array.from(list);
}

function maxLen(segs: Int32Array, at: number): number {
  let m = 0;
  for (let i = at; i < segs.length; i += 4) m = Math.max(m, segs[i]!);
  return m;
}

export function attention(args: AttentionArgs<CpuStorage>): void {
  const { B, Tq, Tk, Hq, Hkv, D, scale, causal, dtype } = args;
  const ldq = Hq * D;
  const ldk = Hkv * D;
  const kLen = args.kvLength ? Math.min(Math.max((args.kvLength as Int32Array)[0]!, 0), Tk) : Tk;
  // of a KV cache only its filled rows are read: 16-bit keys and values are widened that far only
  const used = Math.max(0, (B - 1) * Tk + kLen) * ldk;
  const q = f32Of(args.q, dtype); // [B, Tq, Hq, D]
  const k = f32Of(args.k.subarray(0, used) as CpuStorage, dtype); // [B, Tk, Hkv, D]
  const v = f32Of(args.v.subarray(0, used) as CpuStorage, dtype); // [B, Tk, Hkv, D]
  const out = f32Out(args.out, dtype, B * Tq * Hq * D); // [B, Tq, Hq, D]
  const lse = args.lse as Float32Array; // [B, Hq, Tq]
  const group = Hq / Hkv;
  const segs = segments(B, Tq, Tk, args.cuSeqlens, kLen);
  const s = new Float32Array(BLOCK_ROWS * maxLen(segs, 3)); // one block of scores [rows, kEnd]
  for (let g = 0; g < segs.length; g += 4) {
    const b = segs[g]!;
    const start = segs[g + 1]!;
    const qLen = segs[g + 2]!;
    const kLen = segs[g + 3]!;
    const off = kLen - qLen; // bottom-right causal alignment
    for (let h = 0; h < Hq; h++) {
      const qBase = (b * Tq + start) * ldq + h * D;
      const kBase = (b * Tk + start) * ldk + Math.floor(h / group) * D;
      const lseBase = (b * Hq + h) * Tq + start;
      for (let i0 = 0; i0 < qLen; i0 += BLOCK_ROWS) {
        const rows = Math.min(BLOCK_ROWS, qLen - i0);
        const kEnd = causal ? Math.min(kLen, i0 + rows + off) : kLen;
        if (kEnd <= 0) {
          for (let r = 0; r < rows; r++) {
            out.fill(0, qBase + (i0 + r) * ldq, qBase + (i0 + r) * ldq + D);
            lse[lseBase + i0 + r] = -Infinity;
          }
          continue;
        }
        // S [rows, kEnd] = scale * Q[i0:i0+rows] K[0:kEnd]^T
        sgemm(false, true, rows, kEnd, D, scale, q, qBase + i0 * ldq, ldq, k, kBase, ldk, 0, s, 0, kEnd);
        for (let r = 0; r < rows; r++) {
          const lim = causal ? Math.max(0, Math.min(kEnd, i0 + r + off + 1)) : kEnd; // 0: the row sees no key (output 0, lse -inf)
          const row = r * kEnd;
          let max = -Infinity;
          for (let j = 0; j < lim; j++) if (s[row + j]! > max) max = s[row + j]!;
          let sum = 0;
          for (let j = 0; j < lim; j++) {
            const e = Math.exp(s[row + j]! - max);
            s[row + j] = e;
            sum += e;
          }
          const inv = 1 / sum;
          for (let j = 0; j < lim; j++) s[row + j]! *= inv;
          s.fill(0, row + lim, row + kEnd);
          lse[lseBase + i0 + r] = max + Math.log(sum);
        }
        // O[i0:i0+rows] = P V[0:kEnd]
        sgemm(false, false, rows, D, kEnd, 1, s, 0, kEnd, v, kBase, ldk, 0, out, qBase + i0 * ldq, ldq);
      }
    }
  }
  commit(args.out, dtype, out);
}

export function attentionBackward(args: AttentionBackwardArgs<CpuStorage>): void {
  const { B, Tq, Tk, Hq, Hkv, D, scale, causal, dtype } = args;
  const q = f32Of(args.q, dtype); // [B, Tq, Hq, D]
  const k = f32Of(args.k, dtype); // [B, Tk, Hkv, D]
  const v = f32Of(args.v, dtype);
  const o = f32Of(args.out, dtype); // [B, Tq, Hq, D]
  const dout = f32Of(args.dout, dtype);
  const lse = args.lse as Float32Array; // [B, Hq, Tq]
  const dq = f32Out(args.dq, dtype, B * Tq * Hq * D);
  const dk = f32Out(args.dk, dtype, B * Tk * Hkv * D);
  const dv = f32Out(args.dv, dtype, B * Tk * Hkv * D);
  dq.fill(0);
  dk.fill(0);
  dv.fill(0);
  const group = Hq / Hkv;
  const ldq = Hq * D;
  const ldk = Hkv * D;
  const segs = segments(B, Tq, Tk, args.cuSeqlens);
  const kMax = maxLen(segs, 3);
  // two score blocks (P and dS) of at most half the rows each, so together under one T x T slice
  const blockRows = Math.max(1, Math.min(BLOCK_ROWS, Math.floor(maxLen(segs, 2) / 2)));
  const p = new Float32Array(blockRows * kMax);
  const ds = new Float32Array(blockRows * kMax);
  for (let g = 0; g < segs.length; g += 4) {
    const b = segs[g]!;
    const start = segs[g + 1]!;
    const qLen = segs[g + 2]!;
    const kLen = segs[g + 3]!;
    const off = kLen - qLen;
    for (let h = 0; h < Hq; h++) {
      const qBase = (b * Tq + start) * ldq + h * D;
      const kBase = (b * Tk + start) * ldk + Math.floor(h / group) * D;
      const lseBase = (b * Hq + h) * Tq + start;
      for (let i0 = 0; i0 < qLen; i0 += blockRows) {
        const rows = Math.min(blockRows, qLen - i0);
        const kEnd = causal ? Math.min(kLen, i0 + rows + off) : kLen;
        if (kEnd <= 0) continue;
        const rowBase = qBase + i0 * ldq;
        // P = exp(scale * Q K^T - lse), masked
        sgemm(false, true, rows, kEnd, D, scale, q, rowBase, ldq, k, kBase, ldk, 0, p, 0, kEnd);
        // dP = dO V^T
        sgemm(false, true, rows, kEnd, D, 1, dout, rowBase, ldq, v, kBase, ldk, 0, ds, 0, kEnd);
        for (let r = 0; r < rows; r++) {
          const lim = causal ? Math.max(0, Math.min(kEnd, i0 + r + off + 1)) : kEnd; // 0: the row sees no key (output 0, lse -inf)
          const row = r * kEnd;
          const l = lse[lseBase + i0 + r]!;
          // delta = sum_d dO * O for this query row
          let dl = 0;
          const od = rowBase + r * ldq;
          for (let d = 0; d < D; d++) dl += dout[od + d]! * o[od + d]!;
          for (let j = 0; j < lim; j++) {
            const pj = Math.exp(p[row + j]! - l);
            p[row + j] = pj;
            ds[row + j] = pj * (ds[row + j]! - dl); // dS = P * (dP - delta)
          }
          p.fill(0, row + lim, row + kEnd);
          ds.fill(0, row + lim, row + kEnd);
        }
        // dV[0:kEnd] += P^T dO
        sgemm(true, false, kEnd, D, rows, 1, p, 0, kEnd, dout, rowBase, ldq, 1, dv, kBase, ldk);
        // dQ[rows] = scale * dS K
        sgemm(false, false, rows, D, kEnd, scale, ds, 0, kEnd, k, kBase, ldk, 0, dq, rowBase, ldq);
        // dK[0:kEnd] += scale * dS^T Q
        sgemm(true, false, kEnd, D, rows, scale, ds, 0, kEnd, q, rowBase, ldq, 1, dk, kBase, ldk);
      }
    }
  }
  commit(args.dq, dtype, dq);
  commit(args.dk, dtype, dk);
  commit(args.dv, dtype, dv);
}
