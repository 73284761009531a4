// CPU rotary embedding, Hugging Face rotate_half convention:
//   out = x * cos + rotate_half(x) * sin,  rotate_half([x1, x2]) = [-x2, x1]  (halves of D)
// `inverse` applies the transposed rotation (the backward), exact even when the two halves of the
// cos/sin tables differ.

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

export function rope(
  xS: CpuStorage, cosS: CpuStorage, sinS: CpuStorage, out: CpuStorage,
  B: number, T: number, H: number, D: number, csBatchStride: number, inverse: boolean, dtype: FloatDType,
): void {
  const x = f32Of(xS, dtype); // [B, T, H, D]
  const cos = f32Of(cosS, dtype); // [B|1, T, D]
  const sin = f32Of(sinS, dtype);
  const y = f32Out(out, dtype, B * T * H * D);
  const half = D >> 1;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const cs = b * csBatchStride + t * D;
      for (let h = 0; h < H; h++) {
        const base = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const x1 = x[base + i]!;
          const x2 = x[base + i + half]!;
          // forward: y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2; inverse uses the transposed rotation
          if (inverse) {
            y[base + i] = x1 * cos[cs + i]! + x2 * sin[cs + i + half]!;
            y[base + i + half] = x2 * cos[cs + i + half]! - x1 * sin[cs + i]!;
          } else {
            y[base + i] = x1 * cos[cs + i]! - x2 * sin[cs + i]!;
            y[base + i + half] = x2 * cos[cs + i + half]! + x1 * sin[cs + i + half]!;
          }
        }
      }
    }
  }
  commit(out, dtype, y);
}
