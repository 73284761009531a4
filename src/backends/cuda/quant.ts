// CUDA launcher of NF4 dequantisation (native/cuda/nf4.cu). The code tables (16 NF4 values, the
// 256-entry dynamic map) are uploaded once, from the CPU backend's float32 arrays, on first use.

import type { Backend } from '../backend.ts';
import { DYNAMIC_CODE, NF4_CODE } from '../cpu/nf4.ts';
import { sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

export function quantKernels(rt: CudaRuntime): Pick<Backend<CudaStorage>, 'nf4Dequantize'> {
  let tables: CudaStorage | null = null;
  return {
    nf4Dequantize(packed, absCodes, absScales, offset, out, n, blockSize, absBlockSize, dtype) {
      if (n === 0) return;
      if (!tables) {
        const host = new Float32Array(16 + 256);
        host.set(NF4_CODE, 0);
        host.set(DYNAMIC_CODE, 16);
        tables = rt.allocRaw(host.byteLength, () => 'NF4 code tables');
        rt.driver.copyToDevice(tables.ptr, host, host.byteLength);
      }
      const pairs = Math.ceil(n / 2);
      rt.launch('nf4', `nf4_dequantize_${sfx(dtype)}`, [rt.blocksFor(pairs)], [256], 0, 'ppppfplii', [
        packed.ptr, absCodes?.ptr ?? 0, absScales.ptr, tables.ptr, offset, out.ptr, n, blockSize, absBlockSize,
      ]);
    },
  };
}
