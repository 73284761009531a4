// CUDA memory and elementwise kernels of the contract: alloc/free/write/read, fill, cast, strided
// copy, broadcasting binary ops, unary activations and their derivatives, scale, axpy, axis sums and
// SwiGLU (native/cuda/elementwise.cu), dropout (native/cuda/dropout.cu). Strided walks are merged on the host first (the CPU
// backend's `coalesce`), so most become one flat loop on the device.

import type { Backend, BinaryOp, UnaryOp } from '../backend.ts';
import { allocHost, dtypeBytes, f32ToBf16Bits, f32ToF16Bits, hostArrayMatches, type DType } from '../../tensor/dtype.ts';
import { dropoutScale, dropoutThreshold } from '../cpu/dropout.ts';
import { coalesce } from '../cpu/elementwise.ts';
import { at, dtypeCode, sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

/** XTUNER_POISON_UNINIT=1: uninitialised storage reads as NaN (see Backend.allocUninit). */
const POISON_UNINIT = process.env['XTUNER_POISON_UNINIT'] === '1';
const BINARY_OPS: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3 };
const UNARY_OPS: Record<UnaryOp, number> = {
  silu: 0, gelu: 1, geluTanh: 2, quickGelu: 3, relu: 4, sigmoid: 5, tanh: 6, exp: 7, log: 8, sqrt: 9, neg: 10,
};
const MAX_RANK = 8;
const COPY_KERNEL: Record<number, string> = { 1: 'copy_strided_b1', 2: 'copy_strided_b2', 4: 'copy_strided_b4', 8: 'copy_strided_b8' };

/** The Strides2 struct of common.cuh: int rank; i64 shape[8], s0[8], s1[8] (200 bytes). */
function strides2(shape: readonly number[], s0: readonly number[], s1: readonly number[]): Buffer {
  if (shape.length > MAX_RANK) throw new Error(`CUDA strided kernel: rank ${shape.length} > ${MAX_RANK} after merging dims`);
  const b = Buffer.alloc(200);
  b.writeInt32LE(shape.length, 0);
  for (let d = 0; d < shape.length; d++) {
    b.writeBigInt64LE(BigInt(shape[d]!), 8 + 8 * d);
    b.writeBigInt64LE(BigInt(s0[d]!), 72 + 8 * d);
    b.writeBigInt64LE(BigInt(s1[d]!), 136 + 8 * d);
  }
  return b;
}

/** Bit pattern of `value` as one element of `dtype` (for memset), as the CPU backend's fill stores it. */
function fillBits(dtype: DType, value: number): number {
  switch (dtype) {
    case 'float32':
      return new Uint32Array(Float32Array.of(value).buffer)[0]!;
    case 'bfloat16':
      return f32ToBf16Bits(value);
    case 'float16':
      return f32ToF16Bits(value);
    case 'int32':
      return Int32Array.of(value)[0]! >>> 0;
    case 'uint8':
      return Uint8Array.of(value)[0]!;
    case 'int64':
      throw new Error('int64 fills go through fill_b64');
    default:
      return dtype satisfies never;
  }
}

type Kernels = Pick<
  Backend<CudaStorage>,
  'alloc' | 'allocUninit' | 'free' | 'write' | 'read' | 'fill' | 'cast' | 'copyStrided' | 'binary' | 'unary' | 'unaryBackward' | 'scale' | 'axpy' | 'dropout' | 'reduceSum' | 'swiglu' | 'swigluBackward'
>;

export function elementwiseKernels(rt: CudaRuntime): Kernels {
  const d = rt.driver;
  const flat = (name: string, sig: string, n: number, args: (number | bigint | Buffer)[]): void => {
    if (n > 0) rt.launch('elementwise', name, [rt.blocksFor(n)], [256], 0, sig, args);
  };
  return {
    alloc(dtype, size) {
      const bytes = size * dtypeBytes(dtype);
      const s = rt.allocRaw(bytes, () => `a ${dtype} tensor of ${size} elements`);
      d.memset(s.ptr, 1, 0, bytes);
      return s;
    },
    allocUninit(dtype, size) {
      const bytes = size * dtypeBytes(dtype);
      const s = rt.allocRaw(bytes, () => `a ${dtype} tensor of ${size} elements`);
      if (POISON_UNINIT) d.memset(s.ptr, 1, 0xff, bytes);
      return s;
    },
    free: (s) => rt.free(s),
    write(dst, dtype, offset, src) {
      if (!hostArrayMatches(src, dtype)) throw new Error(`cuda write: host array ${src.constructor.name} does not carry ${dtype}`);
      if ((offset + src.length) * dtypeBytes(dtype) > dst.bytes) throw new Error(`cuda write: [${offset}, ${offset + src.length}) is outside the storage`);
      d.copyToDevice(at(dst, dtype, offset), src, src.byteLength, 'the write op');
    },
    read(src, dtype, offset, size) {
      if ((offset + size) * dtypeBytes(dtype) > src.bytes) throw new Error(`cuda read: [${offset}, ${offset + size}) is outside the storage`);
      const out = allocHost(dtype, size);
      d.copyToHost(out, at(src, dtype, offset), out.byteLength, 'the read op');
      return out;
    },
    fill(dst, dtype, offset, size, value) {
      if (dtype === 'int64') flat('fill_b64', 'pll', size, [at(dst, dtype, offset), size, BigInt(Math.trunc(value))]);
      else d.memset(at(dst, dtype, offset), dtypeBytes(dtype) as 1 | 2 | 4, fillBits(dtype, value), size);
    },
    cast(src, srcDtype, dst, dstDtype, size) {
      if (srcDtype !== dstDtype) flat('cast_any', 'pipil', size, [src.ptr, dtypeCode(srcDtype), dst.ptr, dtypeCode(dstDtype), size]);
      else if (src.ptr !== dst.ptr) d.copyDeviceToDevice(dst.ptr, src.ptr, size * dtypeBytes(srcDtype)); // in place: nothing to do
    },
    copyStrided(src, srcOffset, srcStrides, dst, dstOffset, dstStrides, shape, dtype, shift) {
      if (shape.some((n) => n === 0)) return;
      const { shape: sh, strides } = coalesce(shape, [srcStrides, dstStrides]);
      const [ss, ds] = strides as [number[], number[]];
      const n = sh.reduce((a, b) => a * b, 1);
      if (!shift && sh.length === 1 && ss[0] === 1 && ds[0] === 1) {
        d.copyDeviceToDevice(at(dst, dtype, dstOffset), at(src, dtype, srcOffset), n * dtypeBytes(dtype));
        return;
      }
      flat(COPY_KERNEL[dtypeBytes(dtype)]!, 'ppslpl', n, [at(src, dtype, srcOffset), at(dst, dtype, dstOffset), strides2(sh, ss, ds), n, shift?.at.ptr ?? 0, shift?.stride ?? 0]);
    },
    binary(op, a, aStrides, b, bStrides, out, shape, dtype) {
      const n = shape.reduce((x, y) => x * y, 1);
      if (n === 0) return;
      const outStrides = new Array<number>(shape.length);
      for (let i = shape.length - 1, s = 1; i >= 0; i--) {
        outStrides[i] = s;
        s *= shape[i]!;
      }
      const { shape: sh, strides } = coalesce(shape, [aStrides, bStrides, outStrides]);
      flat(`binary_${sfx(dtype)}`, 'ipppsl', n, [BINARY_OPS[op], a.ptr, b.ptr, out.ptr, strides2(sh, strides[0]!, strides[1]!), n]);
    },
    unary: (op, x, out, size, dtype) => flat(`unary_${sfx(dtype)}`, 'ippl', size, [UNARY_OPS[op], x.ptr, out.ptr, size]),
    unaryBackward: (op, x, dy, dx, size, dtype) =>
      flat(`unary_bwd_${sfx(dtype)}`, 'ipppl', size, [UNARY_OPS[op], x.ptr, dy.ptr, dx.ptr, size]),
    scale: (x, out, size, alpha, dtype, by) => flat(`scale_${sfx(dtype)}`, 'pplfp', size, [x.ptr, out.ptr, size, alpha, by?.ptr ?? 0]),
    axpy: (x, y, size, alpha, dtype) => flat(`axpy_${sfx(dtype)}`, 'pplf', size, [x.ptr, y.ptr, size, alpha]),
    dropout(x, out, size, p, seed, call, dtype, accumulate = false) {
      const groups = Math.ceil(size / 4);
      if (groups === 0) return;
      // uint32 values travel as the int32 of the same bits
      rt.launch('dropout', `dropout_${sfx(dtype)}`, [rt.blocksFor(groups)], [256], 0, 'pplifpii', [
        x.ptr, out.ptr, size, dropoutThreshold(p) | 0, dropoutScale(p), seed.ptr, call | 0, accumulate ? 1 : 0,
      ]);
    },
    reduceSum(x, out, outer, mid, inner, dtype) {
      if (outer * inner === 0) return;
      if (mid === 0) {
        d.memset(out.ptr, dtypeBytes(dtype) as 2 | 4, 0, outer * inner);
        return;
      }
      if (inner === 1) {
        rt.launch('elementwise', `reduce_rows_${sfx(dtype)}`, [outer], [256], 0, 'ppl', [x.ptr, out.ptr, mid]);
        return;
      }
      // grid.y (outer) is limited to 65535: launch in slices of outer
      for (let o0 = 0; o0 < outer; o0 += 65535) {
        const rows = Math.min(65535, outer - o0);
        rt.launch('elementwise', `reduce_cols_${sfx(dtype)}`, [Math.ceil(inner / 32), rows], [32, 8], 0, 'ppll', [
          at(x, dtype, o0 * mid * inner), at(out, dtype, o0 * inner), mid, inner,
        ]);
      }
    },
    swiglu: (gate, up, out, size, dtype) => flat(`swiglu_${sfx(dtype)}`, 'pppl', size, [gate.ptr, up.ptr, out.ptr, size]),
    swigluBackward: (gate, up, dout, dgate, dup, size, dtype) =>
      flat(`swiglu_bwd_${sfx(dtype)}`, 'pppppl', size, [gate.ptr, up.ptr, dout.ptr, dgate.ptr, dup.ptr, size]),
  };
}

