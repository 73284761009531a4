// NF4 quantisation, dequantisation and x W^T for a few rows straight from the 4-bit weight
// (src/quant/nf4.ts layout), float32, bfloat16 or float16 weights. The code tables come in as one
// float32 device array uploaded once by the launcher from the CPU backend's tables
// (src/backends/cpu/nf4.ts), so both backends use the same numbers: 16 NF4 values, the 256-entry
// dynamic map, then the midpoints between neighbouring codes (15 and 255) that rounding to the
// nearest code compares against. Every product, quotient and sum of (de)quantisation is rounded on
// its own (__fmul_rn, __fdiv_rn, __fsub_rn, __dadd_rn: no fused multiply-add, no fast reciprocal)
// to give the CPU reference's bits exactly. Nothing here flushes subnormals (no --use_fast_math),
// as JavaScript does not.
#include "common.cuh"

#define NF4_CODE_AT 0
#define DYN_CODE_AT 16
#define NF4_MIDS_AT 272
#define DYN_MIDS_AT 287
#define NF4_ZERO 7  // index of 0.0: a block with absmax 0 stores it everywhere
// Threads of the absmax mean: its summation order (cpu/nf4.ts NF4_MEAN_LANES) depends on it.
#define NF4_MEAN_THREADS 1024

// Index of the NF4 code nearest to x: the number of the 15 midpoints below it (a tie goes to the
// lower code, NaN to 0). A branch-free count: lanes of a warp never diverge on it.
__device__ __forceinline__ int nf4_index(const float* tables, float x) {
  int k = 0;
#pragma unroll
  for (int m = 0; m < 15; m++) k += x > tables[NF4_MIDS_AT + m];
  return k;
}

// The same for the 256 dynamic codes (8 steps of binary search; only one value per 64 weights).
__device__ __forceinline__ int dyn_index(const float* tables, float x) {
  int lo = 0, hi = 255;
  while (lo < hi) {
    const int m = (lo + hi) >> 1;
    if (x > tables[DYN_MIDS_AT + m]) lo = m + 1;
    else hi = m;
  }
  return lo;
}

// One warp per block of `block_size` weights (grid-stride over blocks): lane l takes the pairs
// (2l, 2l+1), (2l+64, 2l+65), ... of the block, so a warp reads 64 consecutive weights per step.
// The block's absmax is a warp max (exact in any order), then each pair becomes one packed byte.
// x [n] -> packed uint8 [ceil(n/2)], absmax float32 [ceil(n/block_size)]
template <typename T>
__device__ void nf4_quantize(const T* x, const float* tables, unsigned char* packed, float* absmax, i64 n,
                             int block_size) {
  const int lane = threadIdx.x & 31;
  const i64 n_blocks = (n + block_size - 1) / block_size;
  const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
  for (i64 b = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; b < n_blocks; b += warps) {
    const i64 start = b * block_size, end = min(n, start + block_size);
    float m = 0.f;  // NaN never wins a comparison, as in the CPU reference
    for (i64 i = start + 2 * lane; i < end; i += 64) {
      const float a = fabsf(ld(x, i));
      if (a > m) m = a;
      if (i + 1 < end) {
        const float c = fabsf(ld(x, i + 1));
        if (c > m) m = c;
      }
    }
    m = warp_max(m);
    if (lane == 0) absmax[b] = m;
    const float inv = m == 0.f ? 0.f : __fdiv_rn(1.f, m);  // 0 also for m = inf: zeros stored
    for (i64 i = start + 2 * lane; i < end; i += 64) {
      const int hi = inv == 0.f ? NF4_ZERO : nf4_index(tables, __fmul_rn(ld(x, i), inv));
      const int lo = i + 1 >= end ? 0 : inv == 0.f ? NF4_ZERO : nf4_index(tables, __fmul_rn(ld(x, i + 1), inv));
      packed[i >> 1] = (unsigned char)(hi << 4 | lo);
    }
  }
}

#define NF4_QUANTIZE(T, s)                                                                              \
  extern "C" __global__ void nf4_quantize_##s(const T* x, const float* tables, unsigned char* packed, \
                                              float* absmax, i64 n, int block_size) {                 \
    nf4_quantize(x, tables, packed, absmax, n, block_size);                                            \
  }
FOR_FLOATS(NF4_QUANTIZE)

// offset [1] = fround(mean of absmax [n]) in float64, in the order of cpu/nf4.ts absmaxMean: thread
// t adds elements t, t + 1024, ... (coalesced), then a halving tree in shared memory. One block of
// NF4_MEAN_THREADS threads: n is one value per 64 weights, a few MB for the largest 7B linear.
extern "C" __global__ void nf4_absmax_mean(const float* absmax, i64 n, float* offset) {
  __shared__ double lanes[NF4_MEAN_THREADS];
  const int t = threadIdx.x;
  double s = 0.0;
  for (i64 i = t; i < n; i += NF4_MEAN_THREADS) s = __dadd_rn(s, (double)absmax[i]);
  lanes[t] = s;
  __syncthreads();
  for (int h = NF4_MEAN_THREADS >> 1; h > 0; h >>= 1) {
    if (t < h) lanes[t] = __dadd_rn(lanes[t], lanes[t + h]);
    __syncthreads();
  }
  if (t == 0) *offset = __double2float_rn(__ddiv_rn(lanes[0], (double)n));
}

// Double quantisation of absmax [n]: one thread block per block of `abs_block_size` values
// (grid-stride): scale = max |absmax - offset| over it, then codes [n] = the nearest dynamic codes
// of (absmax - offset) / scale (0 when the scale is 0), scales [ceil(n / abs_block_size)].
extern "C" __global__ void nf4_absmax_codes(const float* absmax, const float* offset_p, const float* tables,
                                            unsigned char* codes, float* scales, i64 n, int abs_block_size) {
  __shared__ float scratch[32];
  const float offset = *offset_p;
  for (i64 c = blockIdx.x; c * abs_block_size < n; c += gridDim.x) {
    const i64 start = c * abs_block_size, end = min(n, start + abs_block_size);
    float m = 0.f;
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      const float a = fabsf(__fsub_rn(absmax[i], offset));
      if (a > m) m = a;
    }
    m = block_max(m, scratch);
    if (threadIdx.x == 0) scales[c] = m;
    const float inv = __fdiv_rn(1.f, m);
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
      codes[i] = (unsigned char)dyn_index(tables, m == 0.f ? 0.f : __fmul_rn(__fsub_rn(absmax[i], offset), inv));
    }
  }
}

// The scale of weight block b: decoded from the double-quantised form, or read plain when abs_codes
// is null.
__device__ __forceinline__ float nf4_scale(const unsigned char* abs_codes, const float* abs_scales, const float* tables,
                                           float offset, i64 b, int abs_block_size) {
  return abs_codes ? __fadd_rn(__fmul_rn(tables[DYN_CODE_AT + abs_codes[b]], abs_scales[b / abs_block_size]), offset)
                   : abs_scales[b];
}

// Dequantisation: one thread per packed byte (two weights of the same block).
template <typename T>
__device__ void nf4_dequantize(const unsigned char* packed, const unsigned char* abs_codes, const float* abs_scales,
                               const float* tables, float offset, T* out, i64 n, int block_size, int abs_block_size) {
  GRID_LOOP(j, (n + 1) >> 1) {
    const i64 i = 2 * j;
    const float s = nf4_scale(abs_codes, abs_scales, tables, offset, i / block_size, abs_block_size);
    const unsigned char byte = packed[j];
    st(out, i, __fmul_rn(tables[NF4_CODE_AT + (byte >> 4)], s));
    if (i + 1 < n) st(out, i + 1, __fmul_rn(tables[NF4_CODE_AT + (byte & 15)], s));
  }
}

#define NF4_DEQUANTIZE(T, s)                                                                                       \
  extern "C" __global__ void nf4_dequantize_##s(const unsigned char* packed, const unsigned char* abs_codes,      \
                                                const float* abs_scales, const float* tables, float offset, T* out, \
                                                i64 n, int block_size, int abs_block_size) {                       \
    nf4_dequantize(packed, abs_codes, abs_scales, tables, offset, out, n, block_size, abs_block_size);             \
  }
FOR_FLOATS(NF4_DEQUANTIZE)

// ---- x W^T straight from the 4-bit weight, for a few rows (decoding) ----
// Dequantising W whole for one token writes and reads it in 16 bits: ~8x the bytes of the 4-bit
// weight, which is all this kernel reads. out [rows, n_out] = x [rows, n_in] W^T (+ bias [n_out]),
// W [n_out, n_in] the NF4 weight with each value as nf4_dequantize gives it in T, products and sums
// in float32 (the order of the sum is this kernel's). One warp per output feature o; lane l takes
// the chunks of NF4_MV_K weights l, l + 32, ... of row o: 16 bytes of codes (one load), one scale
// (block_size a multiple of NF4_MV_K), and the same weights' x in each row (16-byte loads). The
// scalar path (a weight per lane and step) takes any n_in, block size and alignment.
#define NF4_MV_ROWS 8  // rows at most (the launcher's NF4_MATVEC_MAX_ROWS)
#define NF4_MV_K 32    // weights per lane and step on the vector path

template <typename T>
__device__ __forceinline__ float round_to(float v) {
  T t;
  st(&t, 0, v);
  return ld(&t, 0);
}

template <typename T>
__device__ void nf4_matvec(const T* x, const unsigned char* packed, const unsigned char* abs_codes, const float* abs_scales,
                           const float* tables, float offset, const T* bias, T* out, int rows, i64 n_out, i64 n_in,
                           int block_size, int abs_block_size) {
  __shared__ float code[16];
  if (threadIdx.x < 16) code[threadIdx.x] = tables[NF4_CODE_AT + threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const i64 o = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (o >= n_out) return;  // a whole warp: no barrier follows
  const i64 base = o * n_in;  // flat index of W[o][0]
  float acc[NF4_MV_ROWS];
#pragma unroll
  for (int r = 0; r < NF4_MV_ROWS; r++) acc[r] = 0.f;
  const bool vec = n_in % NF4_MV_K == 0 && block_size % NF4_MV_K == 0 && aligned16(x) && aligned16(packed);
  if (vec) {
    for (i64 k = (i64)lane * NF4_MV_K; k < n_in; k += 32 * NF4_MV_K) {
      const i64 i = base + k;
      const float s = nf4_scale(abs_codes, abs_scales, tables, offset, i / block_size, abs_block_size);
      emu_check_aligned16(packed + (i >> 1));
      const Vec16<uint32_t> q = *reinterpret_cast<const Vec16<uint32_t>*>(packed + (i >> 1));
#pragma unroll
      for (int c = 0; c < NF4_MV_K / CHUNK; c++) {  // a word of codes: CHUNK weights at a time
        float w[CHUNK];  // byte b of the word holds weights 2b (high nibble) and 2b + 1 (low)
#pragma unroll
        for (int b = 0; b < CHUNK / 2; b++) {
          const unsigned byte = (q.v[c] >> (8 * b)) & 0xffu;
          w[2 * b] = round_to<T>(__fmul_rn(code[byte >> 4], s));
          w[2 * b + 1] = round_to<T>(__fmul_rn(code[byte & 15], s));
        }
#pragma unroll
        for (int r = 0; r < NF4_MV_ROWS; r++) {
          if (r >= rows) break;
          float xv[CHUNK];
          ld_chunk(x, r * n_in + k + c * CHUNK, xv);
#pragma unroll
          for (int j = 0; j < CHUNK; j++) acc[r] = fmaf(w[j], xv[j], acc[r]);
        }
      }
    }
  } else {
    for (i64 k = lane; k < n_in; k += 32) {
      const i64 i = base + k;
      const unsigned char byte = packed[i >> 1];
      const float s = nf4_scale(abs_codes, abs_scales, tables, offset, i / block_size, abs_block_size);
      const float w = round_to<T>(__fmul_rn(code[i & 1 ? byte & 15 : byte >> 4], s));
#pragma unroll
      for (int r = 0; r < NF4_MV_ROWS; r++) {
        if (r >= rows) break;
        acc[r] = fmaf(w, ld(x, r * n_in + k), acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < NF4_MV_ROWS; r++) {
    if (r >= rows) break;
    const float v = warp_sum(acc[r]);
    if (lane == 0) st(out, r * n_out + o, bias ? v + ld(bias, o) : v);
  }
}

#define NF4_MATVEC(T, s)                                                                                             \
  extern "C" __global__ void nf4_matvec_##s(const T* x, const unsigned char* packed, const unsigned char* abs_codes, \
                                            const float* abs_scales, const float* tables, float offset, const T* bias, \
                                            T* out, int rows, i64 n_out, i64 n_in, int block_size,                   \
                                            int abs_block_size) {                                                    \
    nf4_matvec(x, packed, abs_codes, abs_scales, tables, offset, bias, out, rows, n_out, n_in, block_size,           \
               abs_block_size);                                                                                      \
  }
FOR_FLOATS(NF4_MATVEC)
