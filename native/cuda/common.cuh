// Shared device helpers of the xtuner-ts kernels: float loads/stores for float32, bfloat16 and
// float16 storage (arithmetic is always float32), warp and block reductions, and the macros that
// instantiate a template kernel once per dtype under a C name the TypeScript side looks up
// (`<kernel>_<suffix>`, suffix f32 | bf16 | f16). Not a kernel file itself.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;
typedef __half f16;
typedef long long i64;

__device__ __forceinline__ float ld(const float* p, i64 i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16* p, i64 i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const f16* p, i64 i) { return __half2float(p[i]); }
__device__ __forceinline__ void st(float* p, i64 i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16* p, i64 i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void st(f16* p, i64 i, float v) { p[i] = __float2half_rn(v); }

// ---- 16-byte vector access ----
// The vector paths of the memory-bound kernels move a chunk of CHUNK = 8 consecutive elements per
// step: one 16-byte access (ld/st.global.v4) for bf16/f16, two for float32. They need each pointer
// 16-byte aligned and chunks that start at element multiples of 8 (so any float dtype stays
// aligned); the kernels check that once per launch (uniform over the grid) and otherwise, and for
// a tail of n % 8 elements, take their scalar path. The arithmetic per element is the same on both
// paths, so outputs do not depend on which one ran.
#define CHUNK 8
template <typename T>
struct alignas(16) Vec16 {
  T v[16 / sizeof(T)];
};
__device__ __forceinline__ bool aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }
#ifdef XTUNER_EMU
void emu_check_aligned16(const void* p);  // the emulator stops where a GPU would fault
#else
#define emu_check_aligned16(p)
#endif
// x[0, CHUNK) = p[i, i + CHUNK) as floats; p + i 16-byte aligned.
template <typename T>
__device__ __forceinline__ void ld_chunk(const T* p, i64 i, float (&x)[CHUNK]) {
  constexpr int N = 16 / sizeof(T);
  emu_check_aligned16(p + i);
#pragma unroll
  for (int h = 0; h < CHUNK / N; h++) {
    const Vec16<T> v = *reinterpret_cast<const Vec16<T>*>(p + i + h * N);
#pragma unroll
    for (int j = 0; j < N; j++) x[h * N + j] = ld(v.v, j);
  }
}
// p[i, i + CHUNK) = x rounded to T; p + i 16-byte aligned.
template <typename T>
__device__ __forceinline__ void st_chunk(T* p, i64 i, const float (&x)[CHUNK]) {
  constexpr int N = 16 / sizeof(T);
  emu_check_aligned16(p + i);
#pragma unroll
  for (int h = 0; h < CHUNK / N; h++) {
    Vec16<T> v;
#pragma unroll
    for (int j = 0; j < N; j++) st(v.v, j, x[h * N + j]);
    *reinterpret_cast<Vec16<T>*>(p + i + h * N) = v;
  }
}

// Dtype codes shared with src/backends/cuda/dtypes.ts (run-time dispatch in cast and adamw).
enum DtypeCode { DT_F32 = 0, DT_BF16 = 1, DT_F16 = 2, DT_I32 = 3, DT_I64 = 4, DT_U8 = 5 };

__device__ __forceinline__ float ld_code(const void* p, int code, i64 i) {
  switch (code) {
    case DT_BF16: return ld((const bf16*)p, i);
    case DT_F16: return ld((const f16*)p, i);
    default: return ld((const float*)p, i);
  }
}
__device__ __forceinline__ void st_code(void* p, int code, i64 i, float v) {
  switch (code) {
    case DT_BF16: st((bf16*)p, i, v); break;
    case DT_F16: st((f16*)p, i, v); break;
    default: st((float*)p, i, v);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum / max for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
// `scratch` holds 32 floats; the trailing barrier lets callers reuse it at once.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : 0.f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : -INFINITY;
  v = warp_max(v);
  __syncthreads();
  return v;
}

// Grid-stride loop over [0, n) with 64-bit indices.
#define GRID_LOOP(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// M(T, suffix) once per float dtype; M2(T, Ts, W, Ws) once per (data, weight) dtype pair.
#define FOR_FLOATS(M) M(float, f32) M(bf16, bf16) M(f16, f16)
#define FOR_FLOAT_PAIRS_W(M2, T, Ts) M2(T, Ts, float, f32) M2(T, Ts, bf16, bf16) M2(T, Ts, f16, f16)
#define FOR_FLOAT_PAIRS(M2) FOR_FLOAT_PAIRS_W(M2, float, f32) FOR_FLOAT_PAIRS_W(M2, bf16, bf16) FOR_FLOAT_PAIRS_W(M2, f16, f16)

// Dims and strides (elements) of a strided walk after merging contiguous dims on the host.
#define MAX_RANK 8
struct Strides2 {
  int rank;
  i64 shape[MAX_RANK];
  i64 s0[MAX_RANK];
  i64 s1[MAX_RANK];
};
