// Elementwise kernels of the contract: cast between any dtypes, strided copy by element width,
// broadcasting binary ops, unary activations and their derivatives, scale, axpy, fill of 8-byte
// elements (1/2/4-byte fills use the driver's memset), axis sums and SwiGLU. Activations are written
// in forms without cancellation in float32 (erfc, sigmoid), the same functions as the CPU's.
// Op codes match src/backends/cuda/elementwise.ts (BINARY_OPS, UNARY_OPS). The flat kernels (cast
// between floats, binary, unary, scale, axpy, SwiGLU) move 16-byte chunks where the pointers allow
// (common.cuh, CHUNK) and single elements otherwise and for tails.
#include "common.cuh"

// out_k[i] = f(in_0[i], ..., in_{NI-1}[i])_k for i in [0, n): f(x, y) takes the NI inputs of one
// element as floats and writes its NO outputs. Chunks of 8 when every pointer is 16-byte aligned,
// then the n % 8 tail (or all of it, unaligned) one element at a time. In place (an output that
// is also an input) is fine: each element is read before it is written, by the same thread.
template <typename T, int NI, int NO, typename F>
__device__ __forceinline__ void map(const T* const (&in)[NI], T* const (&out)[NO], i64 n, F f) {
  bool vec = true;
  for (int k = 0; k < NI; k++) vec = vec && aligned16(in[k]);
  for (int k = 0; k < NO; k++) vec = vec && aligned16(out[k]);
  const i64 head = vec ? n / CHUNK * CHUNK : 0;
  GRID_LOOP(v, head / CHUNK) {
    float x[NI][CHUNK], y[NO][CHUNK];
#pragma unroll
    for (int k = 0; k < NI; k++) ld_chunk(in[k], v * CHUNK, x[k]);
#pragma unroll
    for (int j = 0; j < CHUNK; j++) {
      float xj[NI], yj[NO];
#pragma unroll
      for (int k = 0; k < NI; k++) xj[k] = x[k][j];
      f(xj, yj);
#pragma unroll
      for (int k = 0; k < NO; k++) y[k][j] = yj[k];
    }
#pragma unroll
    for (int k = 0; k < NO; k++) st_chunk(out[k], v * CHUNK, y[k]);
  }
  GRID_LOOP(t, n - head) {
    const i64 i = head + t;
    float xj[NI], yj[NO];
#pragma unroll
    for (int k = 0; k < NI; k++) xj[k] = ld(in[k], i);
    f(xj, yj);
#pragma unroll
    for (int k = 0; k < NO; k++) st(out[k], i, yj[k]);
  }
}

// ---- fill / cast / copy ----

extern "C" __global__ void fill_b64(unsigned long long* dst, i64 n, unsigned long long bits) {
  GRID_LOOP(i, n) dst[i] = bits;
}

__device__ __forceinline__ i64 ld_int(const void* p, int code, i64 i) {
  switch (code) {
    case DT_I32: return ((const int*)p)[i];
    case DT_I64: return ((const i64*)p)[i];
    default: return ((const unsigned char*)p)[i];
  }
}

// Floats round to nearest even; float to int truncates toward zero, then wraps to the width.
// Float to float: chunks of 8 when both pointers are 16-byte aligned, then the tail.
template <typename S, typename D>
__device__ void cast_floats(const S* src, D* dst, i64 n) {
  const i64 head = aligned16(src) && aligned16(dst) ? n / CHUNK * CHUNK : 0;
  GRID_LOOP(v, head / CHUNK) {
    float x[CHUNK];
    ld_chunk(src, v * CHUNK, x);
    st_chunk(dst, v * CHUNK, x);
  }
  GRID_LOOP(t, n - head) st(dst, head + t, ld(src, head + t));
}

extern "C" __global__ void cast_any(const void* src, int srcCode, void* dst, int dstCode, i64 n) {
  switch (srcCode * 8 + dstCode) {  // the float pairs of a mixed-precision step (same dtypes never come here)
    case DT_F32 * 8 + DT_BF16: return cast_floats((const float*)src, (bf16*)dst, n);
    case DT_F32 * 8 + DT_F16: return cast_floats((const float*)src, (f16*)dst, n);
    case DT_BF16 * 8 + DT_F32: return cast_floats((const bf16*)src, (float*)dst, n);
    case DT_BF16 * 8 + DT_F16: return cast_floats((const bf16*)src, (f16*)dst, n);
    case DT_F16 * 8 + DT_F32: return cast_floats((const f16*)src, (float*)dst, n);
    case DT_F16 * 8 + DT_BF16: return cast_floats((const f16*)src, (bf16*)dst, n);
  }
  const bool srcFloat = srcCode <= DT_F16, dstFloat = dstCode <= DT_F16;
  GRID_LOOP(i, n) {
    if (dstFloat) {
      const float v = srcFloat ? ld_code(src, srcCode, i) : (float)ld_int(src, srcCode, i);
      st_code(dst, dstCode, i, v);
    } else {
      const i64 v = srcFloat ? (i64)truncf(ld_code(src, srcCode, i)) : ld_int(src, srcCode, i);
      if (dstCode == DT_I32) ((int*)dst)[i] = (int)(unsigned int)(unsigned long long)v;
      else if (dstCode == DT_I64) ((i64*)dst)[i] = v;
      else ((unsigned char*)dst)[i] = (unsigned char)(unsigned long long)v;
    }
  }
}

// Offsets (elements) of linear index i of the walk in the two stride sets.
__device__ __forceinline__ void strided_offsets(const Strides2& a, i64 i, i64& o0, i64& o1) {
  o0 = 0;
  o1 = 0;
  for (int d = a.rank - 1; d >= 0; d--) {
    const i64 n = a.shape[d];
    const i64 idx = i % n;
    i /= n;
    o0 += idx * a.s0[d];
    o1 += idx * a.s1[d];
  }
}

// dst[walk(s1) + at[0] * atStride] = src[walk(s0)]; elements move as raw bits of width sizeof(E).
// `at` (null: no shift) is read on the device: a captured graph writes where each replay's value
// says (a KV cache's write position).
template <typename E>
__device__ void copy_strided(const E* src, E* dst, Strides2 sd, i64 n, const int* at, i64 atStride) {
  if (at) dst += (i64)at[0] * atStride;
  GRID_LOOP(i, n) {
    i64 so, dof;
    strided_offsets(sd, i, so, dof);
    dst[dof] = src[so];
  }
}
#define COPY(E, name)                                                                                   \
  extern "C" __global__ void copy_strided_##name(const E* src, E* dst, Strides2 sd, i64 n, const int* at, \
                                                 i64 atStride) {                                        \
    copy_strided<E>(src, dst, sd, n, at, atStride);                                                     \
  }
COPY(unsigned char, b1) COPY(unsigned short, b2) COPY(unsigned int, b4) COPY(unsigned long long, b8)

// ---- binary (out contiguous; a, b at their strides, 0 = broadcast) ----

__device__ __forceinline__ float binary_f(int op, float x, float y) {
  switch (op) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x * y;
    default: return x / y;
  }
}

template <typename T>
__device__ void binary(int op, const T* a, const T* b, T* out, Strides2 sd, i64 n) {
  // Chunks when the innermost dim holds whole chunks, a and b run along it (stride 1) or broadcast
  // one value over it (stride 0), and every outer stride keeps chunks 16-byte aligned. The common
  // cases qualify: same-shape tensors (rank 1 after merging) and a row bias ([rows, cols], b [0, 1]).
  const int r = sd.rank - 1;
  bool vec = r >= 0 && aligned16(a) && aligned16(b) && aligned16(out) && sd.shape[r] % CHUNK == 0 &&
             (sd.s0[r] == 0 || sd.s0[r] == 1) && (sd.s1[r] == 0 || sd.s1[r] == 1);
  for (int d = 0; d < r; d++) vec = vec && sd.s0[d] % CHUNK == 0 && sd.s1[d] % CHUNK == 0;
  if (vec) {
    GRID_LOOP(v, n / CHUNK) {
      i64 ia, ib;
      strided_offsets(sd, v * CHUNK, ia, ib);
      float x[CHUNK], y[CHUNK];
      if (sd.s0[r]) ld_chunk(a, ia, x);
      else for (int j = 0; j < CHUNK; j++) x[j] = ld(a, ia);
      if (sd.s1[r]) ld_chunk(b, ib, y);
      else for (int j = 0; j < CHUNK; j++) y[j] = ld(b, ib);
#pragma unroll
      for (int j = 0; j < CHUNK; j++) x[j] = binary_f(op, x[j], y[j]);
      st_chunk(out, v * CHUNK, x);
    }
    return;
  }
  GRID_LOOP(i, n) {
    i64 ia, ib;
    strided_offsets(sd, i, ia, ib);
    st(out, i, binary_f(op, ld(a, ia), ld(b, ib)));
  }
}

// ---- unary ----

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f
#define GELU_TANH_C 0.044715f
#define QUICK_GELU_C 1.702f

__device__ __forceinline__ float sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

__device__ __forceinline__ float unary_f(int op, float x) {
  switch (op) {
    case 0: return x * sigmoidf(x);
    case 1: return 0.5f * x * erfcf(-x * INV_SQRT_2);  // 1 + erf(z) without cancellation for z << 0
    case 2: return x * sigmoidf(2.f * SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x));  // 0.5 (1 + tanh u) = sigmoid(2u)
    case 3: return x * sigmoidf(QUICK_GELU_C * x);
    case 4: return x > 0.f ? x : 0.f;
    case 5: return sigmoidf(x);
    case 6: return tanhf(x);
    case 7: return expf(x);
    case 8: return logf(x);
    case 9: return sqrtf(x);
    default: return -x;
  }
}

// f'(x)
__device__ __forceinline__ float unary_df(int op, float x) {
  switch (op) {
    case 0: {
      const float s = sigmoidf(x);
      return s * (1.f + x * (1.f - s));
    }
    case 1: return 0.5f * erfcf(-x * INV_SQRT_2) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    case 2: {  // with s = sigmoid(2u): 1 + tanh u = 2s, 1 - tanh^2 u = 4 s (1 - s)
      const float s = sigmoidf(2.f * SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x));
      return s + 2.f * x * s * (1.f - s) * SQRT_2_OVER_PI * (1.f + 3.f * GELU_TANH_C * x * x);
    }
    case 3: {
      const float s = sigmoidf(QUICK_GELU_C * x);
      return s + QUICK_GELU_C * x * s * (1.f - s);
    }
    case 4: return x > 0.f ? 1.f : 0.f;
    // s (1 - s) and 1 - tanh^2 cancel in float32 where |x| is large; the product of two
    // sigmoids keeps full relative precision (tanh' x = 4 sigmoid(2x) sigmoid(-2x)).
    case 5: return sigmoidf(x) * sigmoidf(-x);
    case 6: return 4.f * sigmoidf(2.f * x) * sigmoidf(-2.f * x);
    case 7: return expf(x);
    case 8: return 1.f / x;
    case 9: return 0.5f / sqrtf(x);
    default: return -1.f;
  }
}

// ---- axis sums: out[o, i] = sum_m x[o, m, i] ----

// inner == 1: one block per row.
template <typename T>
__device__ void reduce_rows(const T* x, T* out, i64 mid) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * mid;
  float s = 0.f;
  for (i64 m = threadIdx.x; m < mid; m += blockDim.x) s += ld(x, base + m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) st(out, blockIdx.x, s);
}

// inner > 1: block (32 columns x 8 row groups) per (32 columns, outer index); grid (ceil(inner/32), outer).
template <typename T>
__device__ void reduce_cols(const T* x, T* out, i64 mid, i64 inner) {
  __shared__ float part[8][33];
  const i64 o = blockIdx.y;
  const i64 c = (i64)blockIdx.x * 32 + threadIdx.x;
  float s = 0.f;
  if (c < inner) for (i64 m = threadIdx.y; m < mid; m += 8) s += ld(x, (o * mid + m) * inner + c);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < inner) {
    float t = 0.f;
    for (int g = 0; g < 8; g++) t += part[g][threadIdx.x];
    st(out, o * inner + c, t);
  }
}

#define ELEMENTWISE(T, s)                                                                                     \
  extern "C" __global__ void binary_##s(int op, const T* a, const T* b, T* out, Strides2 sd, i64 n) {         \
    binary<T>(op, a, b, out, sd, n);                                                                          \
  }                                                                                                           \
  extern "C" __global__ void unary_##s(int op, const T* x, T* y, i64 n) {                                     \
    map<T, 1, 1>({x}, {y}, n, [=](const float* v, float* r) { r[0] = unary_f(op, v[0]); });                   \
  }                                                                                                           \
  extern "C" __global__ void unary_bwd_##s(int op, const T* x, const T* dy, T* dx, i64 n) {                   \
    map<T, 2, 1>({x, dy}, {dx}, n, [=](const float* v, float* r) { r[0] = v[1] * unary_df(op, v[0]); });      \
  }                                                                                                           \
  /* by: float32 [1] on the device or null; its value multiplies alpha (no host read for a device scalar) */ \
  extern "C" __global__ void scale_##s(const T* x, T* y, i64 n, float alpha, const float* by) {               \
    const float a = by ? alpha * by[0] : alpha;                                                               \
    map<T, 1, 1>({x}, {y}, n, [=](const float* v, float* r) { r[0] = a * v[0]; });                            \
  }                                                                                                           \
  extern "C" __global__ void axpy_##s(const T* x, T* y, i64 n, float alpha) {                                 \
    map<T, 2, 1>({x, y}, {y}, n, [=](const float* v, float* r) { r[0] = v[1] + alpha * v[0]; });              \
  }                                                                                                           \
  extern "C" __global__ void reduce_rows_##s(const T* x, T* out, i64 mid) {                                    \
    reduce_rows<T>(x, out, mid);                                                                              \
  }                                                                                                           \
  extern "C" __global__ void reduce_cols_##s(const T* x, T* out, i64 mid, i64 inner) {                        \
    reduce_cols<T>(x, out, mid, inner);                                                                       \
  }                                                                                                           \
  extern "C" __global__ void swiglu_##s(const T* g, const T* u, T* y, i64 n) {                                \
    map<T, 2, 1>({g, u}, {y}, n, [](const float* v, float* r) { r[0] = v[0] * sigmoidf(v[0]) * v[1]; });      \
  }                                                                                                           \
  /* v: gate, up, dy; r: dgate, dup */                                                                        \
  extern "C" __global__ void swiglu_bwd_##s(const T* g, const T* u, const T* dy, T* dg, T* du, i64 n) {       \
    map<T, 3, 2>({g, u, dy}, {dg, du}, n, [](const float* v, float* r) {                                      \
      const float x = v[0], d = v[2], sg = sigmoidf(x);                                                       \
      r[1] = d * x * sg;                                                                                      \
      r[0] = d * v[1] * sg * (1.f + x * (1.f - sg));                                                          \
    });                                                                                                       \
  }
FOR_FLOATS(ELEMENTWISE)
