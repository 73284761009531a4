// NF4 dequantisation (src/quant/nf4.ts layout) into float32, bfloat16 or float16: one thread per
// packed byte (two weights of the same 64-block), block scales decoded from the double-quantised
// form on the fly. The two code tables come in as one float32 device array (16 NF4 values, then
// the 256-entry dynamic map) uploaded once by the launcher from the CPU backend's tables, so both
// backends multiply the same numbers. Products are rounded one at a time (__fmul_rn, __fadd_rn: no
// fused multiply-add) to give the CPU reference's bits exactly.
#include "common.cuh"

template <typename T>
__device__ void nf4_dequantize(const unsigned char* packed, const unsigned char* abs_codes, const float* abs_scales,
                               const float* tables, float offset, T* out, i64 n, int block_size, int abs_block_size) {
  GRID_LOOP(j, (n + 1) >> 1) {
    const i64 i = 2 * j;
    const i64 b = i / block_size;
    const float s = abs_codes ? __fadd_rn(__fmul_rn(tables[16 + abs_codes[b]], abs_scales[b / abs_block_size]), offset)
                              : abs_scales[b];
    const unsigned char byte = packed[j];
    st(out, i, __fmul_rn(tables[byte >> 4], s));
    if (i + 1 < n) st(out, i + 1, __fmul_rn(tables[byte & 15], s));
  }
}

#define NF4_DEQUANTIZE(T, s)                                                                                       \
  extern "C" __global__ void nf4_dequantize_##s(const unsigned char* packed, const unsigned char* abs_codes,      \
                                                const float* abs_scales, const float* tables, float offset, T* out, \
                                                i64 n, int block_size, int abs_block_size) {                       \
    nf4_dequantize(packed, abs_codes, abs_scales, tables, offset, out, n, block_size, abs_block_size);             \
  }
FOR_FLOATS(NF4_DEQUANTIZE)
