// Cross-entropy of logits [N, V] against int32 labels [N], one block per row: an online max/sum per
// thread merged across the block gives loss (float32 [N]); when d is not null a second pass over
// the row writes dlogits = (softmax - onehot) * scale (0 on ignored rows). Chunking the vocabulary
// so the full logits never exist is the caller's business (it calls this per chunk of rows).
// Rows go through 16-byte accesses (common.cuh) when V is a multiple of 8 and logits and d are
// 16-byte aligned (Qwen2's 151,936 and Llama's 32,000 are), one element at a time otherwise.
#include "common.cuh"

// Adds logit v to the running (max m, sum s of exp(. - m)).
__device__ __forceinline__ void online_add(float v, float& m, float& s) {
  if (v > m) {
    s = s * expf(m - v) + 1.f;
    m = v;
  } else if (v > -INFINITY) {
    s += expf(v - m);
  }
}

template <typename T>
__device__ void cross_entropy(const T* logits, const int* labels, float* loss, T* d, int V, int ignoreIndex, float scale) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * V;
  const int y = labels[blockIdx.x];
  const bool vec = V % CHUNK == 0 && aligned16(logits) && (d == nullptr || aligned16(d));
  const int step = blockDim.x * CHUNK;  // vector path: thread t takes chunks at t * CHUNK + k * step
  if (y == ignoreIndex) {  // uniform across the block
    if (threadIdx.x == 0) loss[blockIdx.x] = 0.f;
    if (d == nullptr) return;
    if (vec) {
      const float zero[CHUNK] = {};
      for (int c = threadIdx.x * CHUNK; c < V; c += step) st_chunk(d, base + c, zero);
    } else {
      for (int c = threadIdx.x; c < V; c += blockDim.x) st(d, base + c, 0.f);
    }
    return;
  }
  float m = -INFINITY, s = 0.f;
  if (vec) {
    for (int c = threadIdx.x * CHUNK; c < V; c += step) {
      float v[CHUNK];
      ld_chunk(logits, base + c, v);
#pragma unroll
      for (int j = 0; j < CHUNK; j++) online_add(v[j], m, s);
    }
  } else {
    for (int c = threadIdx.x; c < V; c += blockDim.x) online_add(ld(logits, base + c), m, s);
  }
  const float M = block_max(m, scratch);
  const float S = block_sum(m == -INFINITY ? 0.f : s * expf(m - M), scratch);
  const float lse = M + logf(S);
  if (threadIdx.x == 0) loss[blockIdx.x] = lse - ld(logits, base + y);
  if (d == nullptr) return;
  if (vec) {
    for (int c = threadIdx.x * CHUNK; c < V; c += step) {
      float v[CHUNK];
      ld_chunk(logits, base + c, v);
#pragma unroll
      for (int j = 0; j < CHUNK; j++) v[j] = expf(v[j] - lse) * scale - (c + j == y ? scale : 0.f);
      st_chunk(d, base + c, v);
    }
  } else {
    for (int c = threadIdx.x; c < V; c += blockDim.x) {
      st(d, base + c, expf(ld(logits, base + c) - lse) * scale - (c == y ? scale : 0.f));
    }
  }
}

#define CE(T, s)                                                                                                 \
  extern "C" __global__ void cross_entropy_##s(const T* logits, const int* labels, float* loss, T* d, int V,      \
                                               int ignore, float scale) {                                       \
    cross_entropy<T>(logits, labels, loss, d, V, ignore, scale);                                                 \
  }
FOR_FLOATS(CE)
