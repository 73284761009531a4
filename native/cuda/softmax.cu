// Softmax over the last axis of x [rows, cols] and its backward, one block per row.
#include "common.cuh"

template <typename T>
__device__ void softmax_fwd(const T* x, T* y, int cols) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * cols;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, ld(x, base + c));
  m = block_max(m, scratch);
  float s = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(ld(x, base + c) - m);
  const float inv = 1.f / block_sum(s, scratch);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) st(y, base + c, expf(ld(x, base + c) - m) * inv);
}

// dx = y * (dy - sum(dy * y))
template <typename T>
__device__ void softmax_bwd(const T* y, const T* dy, T* dx, int cols) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * cols;
  float dot = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dot += ld(dy, base + c) * ld(y, base + c);
  dot = block_sum(dot, scratch);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) st(dx, base + c, ld(y, base + c) * (ld(dy, base + c) - dot));
}

#define SOFTMAX(T, s)                                                                                             \
  extern "C" __global__ void softmax_fwd_##s(const T* x, T* y, int cols) { softmax_fwd<T>(x, y, cols); }          \
  extern "C" __global__ void softmax_bwd_##s(const T* y, const T* dy, T* dx, int cols) { softmax_bwd<T>(y, dy, dx, cols); }
FOR_FLOATS(SOFTMAX)
