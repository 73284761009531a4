// Cross-entropy of logits [N, V] against int32 labels [N], one block per row: an online max/sum per
// thread merged across the block gives loss (float32 [N]); when d is not null a second pass over
// the row writes dlogits = (softmax - onehot) * scale (0 on ignored rows). Chunking the vocabulary
// so the full logits never exist is the caller's business (it calls this per chunk of rows).
#include "common.cuh"

template <typename T>
__device__ void cross_entropy(const T* logits, const int* labels, float* loss, T* d, int V, int ignoreIndex, float scale) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * V;
  const int y = labels[blockIdx.x];
  if (y == ignoreIndex) {  // uniform across the block
    if (threadIdx.x == 0) loss[blockIdx.x] = 0.f;
    if (d != nullptr) for (int c = threadIdx.x; c < V; c += blockDim.x) st(d, base + c, 0.f);
    return;
  }
  float m = -INFINITY, s = 0.f;
  for (int c = threadIdx.x; c < V; c += blockDim.x) {
    const float v = ld(logits, base + c);
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else if (v > -INFINITY) {
      s += expf(v - m);
    }
  }
  const float M = block_max(m, scratch);
  const float S = block_sum(m == -INFINITY ? 0.f : s * expf(m - M), scratch);
  const float lse = M + logf(S);
  if (threadIdx.x == 0) loss[blockIdx.x] = lse - ld(logits, base + y);
  if (d == nullptr) return;
  for (int c = threadIdx.x; c < V; c += blockDim.x) {
    st(d, base + c, expf(ld(logits, base + c) - lse) * scale - (c == y ? scale : 0.f));
  }
}

#define CE(T, s)                                                                                                 \
  extern "C" __global__ void cross_entropy_##s(const T* logits, const int* labels, float* loss, T* d, int V,      \
                                               int ignore, float scale) {                                       \
    cross_entropy<T>(logits, labels, loss, d, V, ignore, scale);                                                 \
  }
FOR_FLOATS(CE)
