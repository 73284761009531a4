// CUDA launchers of NF4 quantisation, dequantisation and the few-row product (native/cuda/nf4.cu).
// The code tables and their midpoints are uploaded once, from the CPU backend's float32 arrays, on
// first use.

import { NF4_MATVEC_MAX_ROWS, type Backend } from '../backend.ts';
import { DYNAMIC_CODE, DYNAMIC_MIDS, NF4_CODE, NF4_MEAN_LANES, NF4_MIDS } from '../cpu/nf4.ts';
import { sfx, type CudaRuntime, type CudaStorage } from './runtime.ts';

/** Threads per block of the quantise kernel: 8 warps, one 64-weight block each per step. */
const QUANT_THREADS = 256;
/** Threads per block of the double quantisation: one block of 256 absmax values per thread block. */
const CODES_THREADS = 256;
/** Output features per block of the few-row product: a warp each. */
const MATVEC_WARPS = 4;

export function quantKernels(rt: CudaRuntime): Pick<Backend<CudaStorage>, 'nf4Quantize' | 'nf4Dequantize' | 'nf4Matvec'> {
  let tableStorage: CudaStorage | null = null;
  // [16 NF4 codes, 256 dynamic codes, 15 NF4 midpoints, 255 dynamic midpoints]: nf4.cu's *_AT offsets
  const tables = (): CudaStorage => {
    if (!tableStorage) {
      const host = new Float32Array(16 + 256 + 15 + 255);
      host.set(NF4_CODE, 0);
      host.set(DYNAMIC_CODE, 16);
      host.set(NF4_MIDS, 272);
      host.set(DYNAMIC_MIDS, 287);
      tableStorage = rt.allocRaw(host.byteLength, () => 'NF4 code tables');
      rt.driver.copyToDevice(tableStorage.ptr, host, host.byteLength, 'the upload of the NF4 code tables');
    }
    return tableStorage;
  };
  return {
    nf4Quantize(x, packed, absmax, absCodes, absScales, offset, n, blockSize, absBlockSize, dtype) {
      if (n === 0) return;
      const nBlocks = Math.ceil(n / blockSize);
      // a warp per block of weights
      rt.launch('nf4', `nf4_quantize_${sfx(dtype)}`, [rt.blocksFor(32 * nBlocks, QUANT_THREADS)], [QUANT_THREADS], 0, 'ppppli', [
        x.ptr, tables().ptr, packed.ptr, absmax.ptr, n, blockSize,
      ]);
      if (!absCodes) return;
      rt.launch('nf4', 'nf4_absmax_mean', [1], [NF4_MEAN_LANES], 0, 'plp', [absmax.ptr, nBlocks, offset!.ptr]);
      rt.launch('nf4', 'nf4_absmax_codes', [rt.blocksFor(Math.ceil(nBlocks / absBlockSize), 1)], [CODES_THREADS], 0, 'pppppli', [
        absmax.ptr, offset!.ptr, tables().ptr, absCodes.ptr, absScales!.ptr, nBlocks, absBlockSize,
      ]);
    },
    nf4Dequantize(packed, absCodes, absScales, offset, out, n, blockSize, absBlockSize, dtype) {
      if (n === 0) return;
      const pairs = Math.ceil(n / 2);
      rt.launch('nf4', `nf4_dequantize_${sfx(dtype)}`, [rt.blocksFor(pairs)], [256], 0, 'ppppfplii', [
        packed.ptr, absCodes?.ptr ?? 0, absScales.ptr, tables().ptr, offset, out.ptr, n, blockSize, absBlockSize,
      ]);
    },
    nf4Matvec(w, x, bias, out, rows, outFeatures, inFeatures, dtype) {
      if (!(rows >= 1 && rows <= NF4_MATVEC_MAX_ROWS)) throw new Error(`nf4Matvec: ${rows} rows, expected 1 to ${NF4_MATVEC_MAX_ROWS}`);
      // a warp per output feature
      rt.launch('nf4', `nf4_matvec_${sfx(dtype)}`, [Math.ceil(outFeatures / MATVEC_WARPS)], [32 * MATVEC_WARPS], 0, 'pppppfppillii', [
        x.ptr, w.packed.ptr, w.absCodes?.ptr ?? 0, w.absScales.ptr, tables().ptr, w.offset, bias?.ptr ?? 0, out.ptr,
        rows, outFeatures, inFeatures, w.blockSize, w.absBlockSize,
      ]);
    },
  };
}
