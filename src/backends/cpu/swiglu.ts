// CPU SwiGLU: out = silu(gate) * up, and its backward in one pass.

import type { FloatDType } from '../../tensor/dtype.ts';
import { commit, f32Of, f32Out, type CpuStorage } from './storage.ts';

export function swiglu(gateS: CpuStorage, upS: CpuStorage, out: CpuStorage, size: number, dtype: FloatDType): void {
  const g = f32Of(gateS, dtype);
  const u = f32Of(upS, dtype);
  const y = f32Out(out, dtype, size);
  for (let i = 0; i < size; i++) y[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
  commit(out, dtype, y);
}

export function swigluBackward(
  gateS: CpuStorage, upS: CpuStorage, doutS: CpuStorage, dgateS: CpuStorage, dupS: CpuStorage, size: number, dtype: FloatDType,
): void {
  const g = f32Of(gateS, dtype);
  const u = f32Of(upS, dtype);
  const dy = f32Of(doutS, dtype);
  const dg = f32Out(dgateS, dtype, size);
  const du = f32Out(dupS, dtype, size);
  for (let i = 0; i < size; i++) {
    const x = g[i]!;
    const s = 1 / (1 + Math.exp(-x));
    du[i] = dy[i]! * x * s;
    dg[i] = dy[i]! * u[i]! * s * (1 + x * (1 - s));
  }
  commit(dgateS, dtype, dg);
  commit(dupS, dtype, du);
}
