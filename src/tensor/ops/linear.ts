// linear(x[..., in], w[out, in], b?[out]) = x w^T + b, the Linear layer. w may be float32, bf16
// or f16 (the output keeps x's dtype). The backward computes only the gradients needed (a frozen
// weight under LoRA costs no dW GEMM), and adds dx straight into x's gradient where one is gathered
// already (beta = 1: q, k and v, or a base layer and its LoRA branch, share their input).

import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { fmt } from '../shape.ts';
import type { Tensor } from '../tensor.ts';
import { checkDevice, checkFloat, empty, castRaw, gemm2d, gatheredOr } from './util.ts';

export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  const device = checkDevice('linear', x, w, b);
  const dtype = checkFloat('linear', 'x', x);
  const wDtype = checkFloat('linear', 'w', w);
  const inF = x.shape[x.shape.length - 1];
  if (w.shape.length !== 2 || inF === undefined || w.shape[1] !== inF) {
    throw new XtunerError(`linear: x ${fmt(x.shape)} needs a weight [out, ${inF}], got ${fmt(w.shape)}`);
  }
  const outF = w.shape[0]!;
  if (b && (b.shape.length !== 1 || b.shape[0] !== outF)) {
    throw new XtunerError(`linear: bias must be [${outF}], got ${fmt(b.shape)}`);
  }
  const rows = x.size / inF;
  const out = empty([...x.shape.slice(0, -1), outF], dtype, device);
  const be = x.backend;
  let beta = 0;
  if (b) {
    // start from the bias in every row, then accumulate the product onto it
    const bb = castRaw(b, dtype);
    be.copyStrided(bb.storage, 0, [0, 1], out.storage, 0, [outF, 1], [rows, outF], dtype);
    if (bb !== b) bb.dispose();
    beta = 1;
  }
  gemm2d(false, true, rows, outF, inF, 1, beta, x, w, out); // out [rows, out] (+)= x w^T
  return recordOp('linear', out, [x, w, b ?? null], [x, w], ([sx, sw], dy, needs, into) => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (needs[0]) {
      // dx [rows, in] (+)= dy [rows, out] w [out, in]
      dx = gatheredOr(into[0], x);
      gemm2d(false, false, rows, inF, outF, 1, dx === into[0] ? 1 : 0, dy, sw!, dx);
    }
    if (needs[1]) {
      // dw [out, in] (+)= dy^T [out, rows] x [rows, in]: into w's grad (any float dtype) where it is kept
      if (into[1]) {
        dw = into[1];
        gemm2d(true, false, outF, inF, rows, 1, 1, dy, sx!, dw);
      } else {
        dw = empty(w.shape, dtype, device);
        gemm2d(true, false, outF, inF, rows, 1, 0, dy, sx!, dw);
        dw = castRaw(dw, wDtype);
      }
    }
    if (needs[2] && b) {
      db = empty([outF], dtype, device);
      be.reduceSum(dy.storage, db.storage, 1, rows, outF, dtype);
      db = castRaw(db, b.dtype);
    }
    return [dx, dw, db];
  });
}
