// The kernel contract: everything a device must provide for the tensor engine to run on it.
// Kernels take storage handles plus explicit sizes, offsets and strides, in elements. They know
// nothing of Tensor objects, autograd, shapes beyond what their arguments say, or models.
// A backend is a value of type `Backend<S>` for its own storage type S, so a backend that lacks a
// kernel does not compile. Storage is opaque here (no host pointers): the CPU backend's storage is
// a typed array, a CUDA backend's will be a device allocation from its caching allocator. Host data
// crosses only through `write` and `read`. Small metadata (cuSeqlens, shapes) are host arrays.
//
// Conventions. Float kernels take the dtype of their float operands; all operands of one kernel
// share it unless the argument list names several dtypes. Arithmetic is at least float32.
// Integer ids and labels are int32 storage. Outputs are contiguous and written whole unless the
// kernel says it accumulates, so ops give them `allocUninit` storage (no zero-fill, which cost an
// H200 step 26 GB of memset); `alloc` returns zero-filled storage. The pointwise kernels (fill,
// cast between equal dtypes, scale, unary, axpy, dropout) may be given the same storage as input
// and output (the in-place helpers and the LoRA branch's backward rely on it); other kernels get
// distinct outputs.

import type { DType, FloatDType, HostArray } from '../tensor/dtype.ts';

export type Device = 'cpu' | 'cuda';

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div';

export type UnaryOp =
  | 'silu'
  | 'gelu'
  | 'geluTanh'
  | 'quickGelu'
  | 'relu'
  | 'sigmoid'
  | 'tanh'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'neg';

/**
 * Row-major C = alpha * op(A) op(B) + beta * C, op(X) = X or X^T; `batch` copies at the strides.
 * Any float dtypes, float32 accumulation. A and B of one dtype with C of that dtype or float32
 * (bf16 x bf16 -> float32 for the gradients of float32 weights) run natively on every backend;
 * other mixes may go through float32 copies (CUDA).
 */
export interface GemmArgs<S> {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  alpha: number;
  beta: number;
  a: S;
  aOffset: number;
  lda: number;
  aDtype: FloatDType;
  b: S;
  bOffset: number;
  ldb: number;
  bDtype: FloatDType;
  c: S;
  cOffset: number;
  ldc: number;
  cDtype: FloatDType;
  batch: number;
  strideA: number;
  strideB: number;
  strideC: number;
}

/**
 * Scaled dot-product attention over q [B,Tq,Hq,D], k/v [B,Tk,Hkv,D] (Hq a multiple of Hkv, query
 * head h reads kv head floor(h / (Hq/Hkv))). Causal masks are aligned bottom-right: query i sees
 * keys j <= i + (Tk - Tq); causal calls have Tq <= Tk (the op checks), so every row sees a key. With cuSeqlens (Tq == Tk), the flattened B*T token axis is cut at those
 * boundaries (and at row ends) and no token attends across a cut.
 */
export interface AttentionShape {
  B: number;
  Tq: number;
  Tk: number;
  Hq: number;
  Hkv: number;
  D: number;
  scale: number;
  causal: boolean;
  /** Int32 boundaries [0, ..., B*T] over the flattened token axis, or null. */
  cuSeqlens: Int32Array | null;
  dtype: FloatDType;
}

/**
 * cuSeqlens as int32 storage on the backend's device (the same boundaries, then repeats of B*T up
 * to a fixed capacity: zero-length samples), so that a call copies nothing; the CUDA backend sizes
 * its grids by `length`. Null: the backend reads `cuSeqlens` (the CPU backend always does).
 */
export interface DeviceCuSeqlens<S> {
  storage: S;
  length: number;
}

export interface AttentionArgs<S> extends AttentionShape {
  cuSeqlensOnDevice?: DeviceCuSeqlens<S> | null;
  /**
   * int32 [1], read where the kernel runs: how many of each row's Tk keys count (a KV cache of Tk
   * rows filled that far, clamped to [0, Tk]; causal masks align at it). Only without cuSeqlens. Null: all Tk.
   */
  kvLength?: S | null;
  q: S;
  k: S;
  v: S;
  /** [B,Tq,Hq,D] */
  out: S;
  /** float32 [B,Hq,Tq]: log-sum-exp of each score row, saved for the backward. */
  lse: S;
}

export interface AttentionBackwardArgs<S> extends AttentionShape {
  cuSeqlensOnDevice?: DeviceCuSeqlens<S> | null;
  q: S;
  k: S;
  v: S;
  out: S;
  dout: S;
  lse: S;
  /** Written whole: [B,Tq,Hq,D], [B,Tk,Hkv,D], [B,Tk,Hkv,D]. */
  dq: S;
  dk: S;
  dv: S;
}

/** An NF4 weight on the device, in nf4Dequantize's terms (absCodes null: plain float32 absmax in absScales). */
export interface Nf4WeightArgs<S> {
  packed: S;
  absCodes: S | null;
  absScales: S;
  offset: number;
  blockSize: number;
  absBlockSize: number;
}

/**
 * Most rows nf4Matvec takes (its sums are registers). Its products run on CUDA cores, which from a
 * few dozen rows on cost more than dequantising W once (4.5 bytes per weight moved) for a
 * tensor-core GEMM; a prompt's prefill goes that way.
 */
export const NF4_MATVEC_MAX_ROWS = 8;

/** PyTorch AdamW (decoupled weight decay, bias-corrected moments): what the tensors of one step share. */
export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * AdamW's step state, read by the kernel from device memory (so a replayed launch sees each step's
 * values): the hyper-parameters and the step count, float64 each, in an int32 storage of
 * ADAMW_STATE_WORDS words laid out by adamwStateWords: [lr, step, beta1, beta2, eps, weightDecay].
 * The host writes it once per step, before the step's launches.
 */
export interface AdamWState extends AdamWHyper {
  /** The step being taken, counted from 1: a tensor's own count is step - its stepLag. */
  step: number;
}

/** Words (int32) of an AdamW step state: six float64 values. */
export const ADAMW_STATE_WORDS = 12;

/** The step state as every backend reads it: float64 [lr, step, beta1, beta2, eps, weightDecay] in int32 words. */
export function adamwStateWords(st: AdamWState): Int32Array {
  return new Int32Array(Float64Array.of(st.lr, st.step, st.beta1, st.beta2, st.eps, st.weightDecay).buffer);
}

/** One tensor of a multi-tensor AdamW step: four storages of `size` elements, each its own float dtype. */
export interface AdamWTensor<S> {
  param: S;
  grad: S;
  expAvg: S;
  expAvgSq: S;
  size: number;
  dtypes: { param: FloatDType; grad: FloatDType; expAvg: FloatDType; expAvgSq: FloatDType };
  /**
   * Steps this tensor missed (stepped without a gradient): its own count, this step included, is the
   * state's step - stepLag (>= 1), which gives its bias corrections. Constant while the same tensors
   * step every time, so the device's table of tensors is too.
   */
  stepLag: number;
  /** A storage of `size` elements that receives the new param cast to `dtype` (a cached model-dtype copy), or none. */
  copy?: { to: S; dtype: FloatDType } | null;
}

/** A float tensor's storage and size, as an input of a reduction over many tensors. */
export interface FloatSpan<S> {
  x: S;
  size: number;
  dtype: FloatDType;
}

export interface Backend<S> {
  readonly device: Device;

  // ---- memory ----
  /** Zero-filled storage for `size` elements of `dtype`. */
  alloc(dtype: DType, size: number): S;
  /**
   * Storage for `size` elements of `dtype` with unspecified contents (stale values of a recycled
   * block), for outputs a kernel writes whole. With XTUNER_POISON_UNINIT=1 it is filled with all-ones
   * bytes (NaN for floats), so a kernel that leaves part of such an output unwritten shows in tests.
   */
  allocUninit(dtype: DType, size: number): S;
  /** The storage is never used again by the caller; the backend may recycle it. */
  free(s: S): void;
  /**
   * Elements [offset, offset + size) of `s` as storage of their own, sharing s's memory (no copy).
   * It owns nothing: never pass it to `free`; it is valid while `s` is (the engine keeps s alive).
   */
  view(s: S, dtype: DType, offset: number, size: number): S;
  /** Copy host elements into dst[offset, offset + src.length). `src` matches `dtype`'s host type. */
  write(dst: S, dtype: DType, offset: number, src: HostArray): void;
  /** A host copy of src[offset, offset + size). */
  read(src: S, dtype: DType, offset: number, size: number): HostArray;

  // ---- data movement ----
  fill(dst: S, dtype: DType, offset: number, size: number, value: number): void;
  /** dst[i] = src[i] converted (floats round to nearest even, float to int truncates). */
  cast(src: S, srcDtype: DType, dst: S, dstDtype: DType, size: number): void;
  /**
   * dst[dstOffset + sum_d i_d dstStrides_d] = src[srcOffset + sum_d i_d srcStrides_d] over `shape`.
   * `shift`: the destination moved by at[0] * stride elements more, `at` an int32 storage read where
   * the copy runs, so a captured CUDA graph writes where each replay's value says (a KV cache's
   * write position).
   */
  copyStrided(
    src: S,
    srcOffset: number,
    srcStrides: readonly number[],
    dst: S,
    dstOffset: number,
    dstStrides: readonly number[],
    shape: readonly number[],
    dtype: DType,
    shift?: { at: S; stride: number },
  ): void;

  // ---- elementwise ----
  /** out (contiguous, `shape`) = a op b, read at their strides (0 = broadcast). */
  binary(
    op: BinaryOp,
    a: S,
    aStrides: readonly number[],
    b: S,
    bStrides: readonly number[],
    out: S,
    shape: readonly number[],
    dtype: FloatDType,
  ): void;
  unary(op: UnaryOp, x: S, out: S, size: number, dtype: FloatDType): void;
  /** dx = dy * f'(x). */
  unaryBackward(op: UnaryOp, x: S, dy: S, dx: S, size: number, dtype: FloatDType): void;
  /**
   * out = a * x, a = alpha, or with `by` (float32 [1] on this device) a = fround(alpha * by[0]),
   * read by the kernel: scaling by a device scalar (an upstream gradient) without a host read.
   */
  scale(x: S, out: S, size: number, alpha: number, dtype: FloatDType, by: S | null): void;
  /** y += alpha * x, in place (gradient accumulation, merges). */
  axpy(x: S, y: S, size: number, alpha: number, dtype: FloatDType): void;
  /**
   * Dropout with a counter-based mask: out[i] = x[i] * (keep_i ? 1/(1-p) : 0), the factor rounded to
   * float32, keep_i false when word i % 4 of Philox4x32-10(counter [i / 4 as 64 bits, call, 0], key
   * [seed[0], seed[1]]) is below floor(p * 2^32) (see cpu/dropout.ts). `seed` (int32 [2] on this
   * device, read by the kernel) is the step's base seed, `call` (uint32) numbers the dropout calls
   * of a step. Every backend draws the same bits, so the backward is this call again on dy with the
   * same seed and call (no mask is stored). `accumulate`: out[i] += the same (a gradient gathered
   * in place), rounded once.
   */
  dropout(x: S, out: S, size: number, p: number, seed: S, call: number, dtype: FloatDType, accumulate?: boolean): void;
  /** out[o, i] = sum_m x[o, m, i] for x [outer, mid, inner]. */
  reduceSum(x: S, out: S, outer: number, mid: number, inner: number, dtype: FloatDType): void;

  // ---- matrix products ----
  gemm(args: GemmArgs<S>): void;

  // ---- fused layers ----
  /** out = silu(gate) * up. */
  swiglu(gate: S, up: S, out: S, size: number, dtype: FloatDType): void;
  swigluBackward(gate: S, up: S, dout: S, dgate: S, dup: S, size: number, dtype: FloatDType): void;
  /** Softmax over the last axis of x [rows, cols]. */
  softmax(x: S, out: S, rows: number, cols: number, dtype: FloatDType): void;
  /** dx = y * (dy - sum(dy * y)) per row. */
  softmaxBackward(y: S, dy: S, dx: S, rows: number, cols: number, dtype: FloatDType): void;
  /** out = x * rstd * w over rows of x [rows, cols]; rstd float32 [rows] saved for the backward. */
  rmsNorm(x: S, w: S, out: S, rstd: S, rows: number, cols: number, eps: number, dtype: FloatDType, wDtype: FloatDType): void;
  /**
   * dx and dw (float32 [cols], the sum over rows) written, dw skipped when null; `accumulate`: dx
   * gets its gradient added (a gradient gathered in place), rounded once.
   */
  rmsNormBackward(
    x: S, w: S, rstd: S, dy: S, dx: S, dw: S | null, rows: number, cols: number, dtype: FloatDType, wDtype: FloatDType, accumulate?: boolean,
  ): void;
  /** out = (x - mean) * rstd * w + b; mean and rstd float32 [rows] saved. b may be null. */
  layerNorm(x: S, w: S, b: S | null, out: S, mean: S, rstd: S, rows: number, cols: number, eps: number, dtype: FloatDType, wDtype: FloatDType): void;
  /** dx, dw and db (float32 [cols], sums over rows) written, dw/db skipped when null. */
  layerNormBackward(
    x: S,
    w: S,
    mean: S,
    rstd: S,
    dy: S,
    dx: S,
    dw: S | null,
    db: S | null,
    rows: number,
    cols: number,
    dtype: FloatDType,
    wDtype: FloatDType,
  ): void;
  /**
   * Rotary embedding, rotate_half convention: out = x * cos + rotate_half(x) * sin, x [B,T,H,D],
   * cos/sin [B,T,D] of x's dtype, read at batch stride `csBatchStride` (0 to share one [T,D] table).
   * `inverse` applies the transpose (the backward: sin negated).
   */
  rope(x: S, cos: S, sin: S, out: S, B: number, T: number, H: number, D: number, csBatchStride: number, inverse: boolean, dtype: FloatDType): void;
  /** out[i, :] = w[ids[i], :] for w [V, H]; ids int32 [n], already checked to lie in [0, V). */
  embedding(w: S, ids: S, out: S, n: number, H: number, dtype: FloatDType): void;
  /** dw = 0, then dw[ids[i], :] += dy[i, :] (repeated ids add up); dw float32 [V, H] written whole. */
  embeddingBackward(dy: S, ids: S, dw: S, n: number, H: number, dtype: FloatDType): void;
  /**
   * Per-row cross-entropy of logits [N, V] against int32 labels [N] (labels already checked):
   * loss[i] = logsumexp(logits[i]) - logits[i, label_i], 0 where label == ignoreIndex (float32 [N]).
   * When dlogits is given, the gradient comes out of the same pass (one exp per logit):
   * dlogits = (softmax(logits) - onehot(label)) * gradScale on counted rows, 0 on ignored ones.
   */
  crossEntropy(logits: S, labels: S, loss: S, dlogits: S | null, N: number, V: number, ignoreIndex: number, gradScale: number, dtype: FloatDType): void;
  attention(args: AttentionArgs<S>): void;
  attentionBackward(args: AttentionBackwardArgs<S>): void;

  // ---- quantised weights ----
  /**
   * NF4 quantisation of x [n] (`dtype`), bit for bit quantizeNf4 of src/quant/nf4.ts (the layout,
   * the rounding to the nearest code, ties to the lower one). Written whole: packed uint8
   * [ceil(n / 2)] (code of element i in the high nibble of packed[i >> 1] for even i, the low one
   * for odd i, 0 after an odd tail) and absmax float32 [nBlocks], nBlocks = ceil(n / blockSize)
   * (blockSize even). With absCodes (double quantisation) also: offset float32 [1] = the mean of
   * absmax summed as absmaxMean (cpu/nf4.ts) orders it, absScales float32 [ceil(nBlocks /
   * absBlockSize)] = max |absmax - offset| per block of absBlockSize, absCodes uint8 [nBlocks] the
   * nearest dynamic codes of (absmax - offset) / scale; absScales and offset are null without.
   * Then absCodes, absScales and the offset's value (or absmax alone) are nf4Dequantize's inputs.
   */
  nf4Quantize(
    x: S,
    packed: S,
    absmax: S,
    absCodes: S | null,
    absScales: S | null,
    offset: S | null,
    n: number,
    blockSize: number,
    absBlockSize: number,
    dtype: FloatDType,
  ): void;
  /**
   * NF4 dequantisation (layout of src/quant/nf4.ts): out[i] = NF4_CODE[code i] * scale_b rounded
   * to float32, then to `dtype`, for i < n, b = floor(i / blockSize); code i is the high nibble of
   * packed[i >> 1] for even i, the low one for odd i (uint8 packed [ceil(n / 2)]). With absCodes
   * (uint8 [nBlocks], double quantisation), scale_b = fround(fround(DYNAMIC_CODE[absCodes[b]] *
   * absScales[floor(b / absBlockSize)]) + offset); without, absScales is float32 [nBlocks] and
   * scale_b = absScales[b]. Tables in cpu/nf4.ts. Every backend gives the same bits.
   */
  nf4Dequantize(
    packed: S,
    absCodes: S | null,
    absScales: S,
    offset: number,
    out: S,
    n: number,
    blockSize: number,
    absBlockSize: number,
    dtype: FloatDType,
  ): void;
  /**
   * out [rows, outFeatures] = x [rows, inFeatures] W^T (+ bias [outFeatures]) for 1 <= rows <=
   * NF4_MATVEC_MAX_ROWS (decoding), W [outFeatures, inFeatures] the NF4 weight `w` with each value
   * as nf4Dequantize gives it in `dtype`; x, bias and out of `dtype`, products and sums in float32
   * in the backend's order, the result rounded to `dtype` once. Reads the 4-bit weight only.
   */
  nf4Matvec(w: Nf4WeightArgs<S>, x: S, bias: S | null, out: S, rows: number, outFeatures: number, inFeatures: number, dtype: FloatDType): void;

  // ---- choosing a token (a row of logits stays where it is; a few values come back) ----
  /** out (int32 [1]) = the first index of the largest of x[0..n). */
  sampleArgmax(x: S, n: number, dtype: FloatDType, out: S): void;
  /**
   * Hugging Face's temperature then top-k over x[0..n) (1 <= k < n, temperature > 0): every i with
   * fl(x_i / t) >= the k-th largest of those (ties kept), x_i not -inf, into out (int32
   * [1 + 2 cap]): out[0] the count (more than `cap`: only `cap` of them written), their ids in
   * out[1 .. 1 + cap), fl(x_i / t) as float32 bits in out[1 + cap ..], in no particular order.
   * x_i / t is divided in double and rounded once to float32.
   */
  topKCandidates(x: S, n: number, k: number, temperature: number, dtype: FloatDType, out: S, cap: number): void;

  // ---- optimizer support (in place, no autograd; nothing is read back) ----
  /**
   * Global L2 norm for clipping (torch.nn.utils.clip_grad_norm_, norm_type 2), on the device:
   * norm[0] = sqrt(sum over every span of sum x^2) and coef[0] = min(1, maxNorm / (norm + 1e-6)),
   * float32 [1] each, the coefficient computed in float32 from the float32 norm (1 for a NaN norm, 0
   * for an infinite one, as the host's `coef < 1` test had it). No spans: norm 0, coef 1.
   */
  gradNormClip(xs: readonly FloatSpan<S>[], maxNorm: number, norm: S, coef: S): void;
  /**
   * One AdamW step of every tensor in place (param, expAvg, expAvgSq from grad), each with its own
   * step count; lr, betas, eps, weight decay and the step are read from `state` (AdamWState, int32
   * [ADAMW_STATE_WORDS]) on the device, the bias corrections computed there in float64 as the CPU
   * does them. With `gradScale` (float32 [1], e.g. gradNormClip's coef, read on the device) each
   * gradient element is multiplied by it, rounded to float32, before use: clipping without a pass
   * of its own. Tensors appear once each (no storage shared between two of them).
   */
  adamwStep(tensors: readonly AdamWTensor<S>[], state: S, gradScale: S | null): void;
}
