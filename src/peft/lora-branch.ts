// The LoRA branch over a half-precision (bf16/f16) model as one autograd op, computed as PyTorch
// autocast runs PEFT's LoRA (transformers + peft under torch.autocast(dtype=bfloat16)): the float32
// adapters are cast to the compute dtype for the matmuls (float32 accumulation), dropout acts on
// the compute-dtype input, and the adapters' gradients come out of the GEMMs as float32, for
// float32 master weights. Instead of a chain of generic ops (cast x to float32, dropout, two
// float32 GEMMs, scale, cast back, add: 7 launches forward, ~8 backward, and a float32 copy of x
// kept per layer), the branch is added straight into the base layer's output:
//
//   out = y + scaling * dropout(x) A^T B^T      x [..., in] (rows = x.size / in), y and out [..., out],
//                                               A float32 [r, in], B float32 [out, r]
//
// Forward, 1 kernel + 2 GEMMs: Ac, Bc = A, B cast to x's dtype (castCopy: cached with A and B,
// cast again only after they were written in place, and refreshed by the AdamW step itself, so no
// cast launch per forward; with `cacheCasts` false, as QLoRA runs it, cast per call: 2 launches
// more, and no copy held between steps: 0.3 GiB at Llama-2-7B r=64); h = dropout(x) (Philox: the step's seed on the device, this call's
// number); z [rows, r] = h Ac^T; y += scaling * z Bc^T (GEMM alpha = scaling, beta = 1, in y's own
// storage, which becomes `out`). That rounds the sum once, where autocast PEFT rounds z Bc^T, its
// product by scaling and the sum each to bf16: about 1 output in 10 differs by one bf16 step.
// Saved for the backward: x (the base layer keeps the same storage anyway), z, Ac, Bc and the
// dropout call (seed buffer and number); neither h nor its mask: the backward redraws the mask.
// Backward, 2 kernels + 4 GEMMs (fewer when x or an adapter needs no gradient):
//   dz [rows, r] = scaling * dy Bc;  dB [out, r] = scaling * dy^T z (float32 out);
//   h = dropout(x) again;  dA [r, in] = dz^T h (float32 out; dA and dB added into the adapters'
//   grads where those are kept);  dx = dropout'(dz Ac) (mask in place),
//   or, where x's gradient is gathered already (the base layer's backward ran first), added into it
//   by the mask kernel itself; dy passes through to y (the base layer's own backward).
// Not here: float32 models, where LoRALinear composes the generic ops (their numbers, bit for bit).

import { XtunerError } from '../errors.ts';
import { recordOp } from '../tensor/autograd.ts';
import { castCopy } from '../tensor/ops/cast.ts';
import type { DropoutStream } from '../tensor/ops/dropout.ts';
import { castRaw, checkDevice, checkFloat, empty, gatheredOr, gemm2d } from '../tensor/ops/util.ts';
import { fmt, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

export interface LoraBranchOptions {
  scaling: number;
  /** Dropout probability of the branch's input, 0 for none (eval). */
  p: number;
  /** Numbers the dropout call (one per call when p > 0) and holds the step's seed. */
  stream: DropoutStream;
  /** Keep A and B's copies in x's dtype between calls (default), or cast them per call (memory first). */
  cacheCasts?: boolean;
}

/**
 * y + scaling * dropout(x) A^T B^T, in x's dtype, written into y's storage: `y` (the base layer's
 * output, held by nothing else) is consumed, disposed, and its storage returned as the result.
 */
export function loraBranch(y: Tensor, x: Tensor, a: Tensor, b: Tensor, opts: LoraBranchOptions): Tensor {
  const device = checkDevice('loraBranch', y, x, a, b);
  const dtype = checkFloat('loraBranch', 'x', x);
  const aDtype = checkFloat('loraBranch', 'A', a);
  const bDtype = checkFloat('loraBranch', 'B', b);
  const inF = x.shape[x.shape.length - 1]!;
  const [r, aIn] = a.shape as [number, number];
  const outF = b.shape[0]!;
  const rows = x.size / inF;
  if (a.shape.length !== 2 || aIn !== inF || b.shape.length !== 2 || b.shape[1] !== r) {
    throw new XtunerError(`loraBranch: x ${fmt(x.shape)} needs A [r, ${inF}] and B [out, r], got A ${fmt(a.shape)} and B ${fmt(b.shape)}`);
  }
  if (y.dtype !== dtype || !sameShape(y.shape, [...x.shape.slice(0, -1), outF])) {
    throw new XtunerError(`loraBranch: y must be ${dtype} ${fmt([...x.shape.slice(0, -1), outF])}, got ${y.dtype} ${fmt(y.shape)}`);
  }
  // y is overwritten: a second handle on its storage (a view, or a tensor saved for a backward) would see it change
  if (y._live().refs !== 1) throw new Error('loraBranch: the base output is shared; it must be owned by this call alone');
  const be = x.backend;
  const { scaling, p } = opts;
  const drop = p > 0 ? opts.stream.take(device) : null;
  /** out = t with this call's dropout mask (the kernel may run in place: out = t); with `add`, out += that. */
  const mask = (t: Tensor, out: Tensor, { seed, call }: { seed: Tensor; call: number }, add = false): void =>
    be.dropout(t.storage, out.storage, t.size, p, seed.storage, call, dtype, add);
  /** t after this call's dropout: a new tensor, or t itself without dropout. */
  const dropped = (t: Tensor): Tensor => {
    if (!drop) return t;
    const out = empty(t.shape, dtype, device);
    mask(t, out, drop);
    return out;
  };
  const copy = opts.cacheCasts !== false ? castCopy : (t: Tensor, d: typeof dtype) => (t.dtype === d ? t._share() : castRaw(t, d));
  const ac = copy(a, dtype); // [r, in]
  const bc = copy(b, dtype); // [out, r]
  const h = dropped(x); // [rows, in]
  const z = empty([rows, r], dtype, device);
  gemm2d(false, true, rows, r, inF, 1, 0, h, ac, z); // z = h Ac^T
  if (h !== x) h.dispose();
  const out = y._share();
  gemm2d(false, true, rows, outF, r, scaling, 1, z, bc, out); // out = y + scaling * z Bc^T
  recordOp('loraBranch', out, [y, x, a, b], [x, z, ac, bc], ([sx, sz, sac, sbc], dy, needs, into) => {
    let dz: Tensor | null = null;
    let dx: Tensor | null = null;
    let dA: Tensor | null = null;
    let dB: Tensor | null = null;
    if (needs[1] || needs[2]) {
      dz = empty([rows, r], dtype, device);
      gemm2d(false, false, rows, r, outF, scaling, 0, dy, sbc!, dz); // dz = scaling * dy Bc
    }
    // dA and dB straight into the adapters' grads where they are kept (from step to step under CUDA graphs)
    if (needs[3]) {
      dB = into[3] ?? empty(b.shape, 'float32', device);
      gemm2d(true, false, outF, r, rows, scaling, dB === into[3] ? 1 : 0, dy, sz!, dB); // dB (+)= scaling * dy^T z
    }
    if (needs[2]) {
      const hb = dropped(sx!); // h again, from the same seed and call
      dA = into[2] ?? empty(a.shape, 'float32', device);
      gemm2d(true, false, r, inF, rows, 1, dA === into[2] ? 1 : 0, dz!, hb, dA); // dA (+)= dz^T h
      if (hb !== sx) hb.dispose();
    }
    if (needs[1]) {
      // added into x's gathered gradient where there is one (the base layer's dx, or a sibling's)
      dx = gatheredOr(into[1], x);
      const add = dx === into[1];
      if (drop) {
        const dh = add ? empty(x.shape, dtype, device) : dx;
        gemm2d(false, false, rows, inF, r, 1, 0, dz!, sac!, dh); // dh = dz Ac
        mask(dh, dx, drop, add); // dx (+)= dropout'(dh): the same mask and factor
        if (dh !== dx) dh.dispose();
      } else {
        gemm2d(false, false, rows, inF, r, 1, add ? 1 : 0, dz!, sac!, dx); // dx (+)= dz Ac
      }
    }
    return [needs[0] ? dy : null, dx, dA && castRaw(dA, aDtype), dB && castRaw(dB, bDtype)];
  });
  // the node holds its own handles: y's storage lives on as `out`, the saved tensors as saved
  y.dispose();
  ac.dispose(); // our handles; the node (and the cache) keep theirs
  bc.dispose();
  z.dispose();
  return out;
}
