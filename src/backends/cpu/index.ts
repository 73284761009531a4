// The CPU backend: the reference implementation of the kernel contract. Storage is a typed array;
// kernels are plain loops (see the files beside this one), matrix products go through sgemm.

import type { Backend, GemmArgs } from '../backend.ts';
import { attention, attentionBackward } from './attention.ts';
import { crossEntropy } from './cross-entropy.ts';
import { dropout } from './dropout.ts';
import { axpy, binary, cast, copyStrided, fill, reduceSum, scale, unary, unaryBackward } from './elementwise.ts';
import { embedding, embeddingBackward } from './embedding.ts';
import { sgemm } from './gemm.ts';
import { nf4Dequantize, nf4Matvec, nf4Quantize } from './nf4.ts';
import { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from './norm.ts';
import { adamwStep, gradNormClip } from './optim.ts';
import { rope } from './rope.ts';
import { sampleArgmax, topKCandidates } from './sampling.ts';
import { softmax, softmaxBackward } from './softmax.ts';
import { commit, cpuAlloc, cpuAllocUninit, cpuFree, cpuRead, cpuWrite, f32Of, type CpuStorage } from './storage.ts';
import { swiglu, swigluBackward } from './swiglu.ts';

export type { CpuStorage } from './storage.ts';

/** Strided-batched GEMM; bf16/f16 operands are decoded to float32 first. */
function gemm(g: GemmArgs<CpuStorage>): void {
  const a = f32Of(g.a, g.aDtype);
  const b = f32Of(g.b, g.bDtype);
  // C is read when beta != 0, so decode it; float32 C is updated in place
  const c = f32Of(g.c, g.cDtype);
  for (let i = 0; i < g.batch; i++) {
    sgemm(
      g.transA, g.transB, g.m, g.n, g.k, g.alpha,
      a, g.aOffset + i * g.strideA, g.lda,
      b, g.bOffset + i * g.strideB, g.ldb,
      g.beta, c, g.cOffset + i * g.strideC, g.ldc,
    );
  }
  commit(g.c, g.cDtype, c);
}

export const cpuBackend: Backend<CpuStorage> = {
  device: 'cpu',
  alloc: cpuAlloc,
  allocUninit: cpuAllocUninit,
  free: cpuFree, // into the cache of reusable arrays, or to the garbage collector
  view: (s, _dtype, offset, size) => s.subarray(offset, offset + size),
  write: cpuWrite,
  read: cpuRead,
  fill,
  cast,
  copyStrided: (src, srcOffset, srcStrides, dst, dstOffset, dstStrides, shape, _dtype, shift) =>
    copyStrided(src, srcOffset, srcStrides, dst, dstOffset + (shift ? (shift.at as Int32Array)[0]! * shift.stride : 0), dstStrides, shape),
  binary,
  unary,
  unaryBackward,
  scale,
  axpy,
  dropout,
  reduceSum,
  gemm,
  swiglu,
  swigluBackward,
  softmax,
  softmaxBackward,
  rmsNorm,
  rmsNormBackward,
  layerNorm,
  layerNormBackward,
  rope,
  embedding,
  embeddingBackward,
  crossEntropy,
  attention,
  attentionBackward,
  nf4Quantize,
  nf4Dequantize,
  nf4Matvec,
  sampleArgmax,
  topKCandidates,
  gradNormClip,
  adamwStep,
};
