// Cross-entropy of logits [N, V] against int32 labels [N]. Forward: one block per row, an online
// max/sum per thread merged across the block, loss and lse float32 [N]. Backward: grid (N, column
// chunks), dlogits = (softmax - onehot) * scale, 0 on ignored rows. Chunking the vocabulary so the
// full logits never exist is the caller's business (it calls these per chunk of rows).
#include "common.cuh"

template <typename T>
__device__ void ce_fwd(const T* logits, const int* labels, float* loss, float* lse, int V, int ignoreIndex) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * V;
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
  if (threadIdx.x == 0) {
    const float l = M + logf(S);
    const int y = labels[blockIdx.x];
    lse[blockIdx.x] = l;
    loss[blockIdx.x] = y == ignoreIndex ? 0.f : l - ld(logits, base + y);
  }
}

template <typename T>
__device__ void ce_bwd(const T* logits, const int* labels, const float* lse, T* d, int V, int ignoreIndex, float scale) {
  const i64 row = blockIdx.x;
  const int y = labels[row];
  const float l = lse[row];
  const i64 base = row * V;
  const int chunk = (V + gridDim.y - 1) / gridDim.y;
  const int end = min(V, (int)(blockIdx.y + 1) * chunk);
  for (int c = blockIdx.y * chunk + threadIdx.x; c < end; c += blockDim.x) {
    const float g = y == ignoreIndex ? 0.f : expf(ld(logits, base + c) - l) * scale - (c == y ? scale : 0.f);
    st(d, base + c, g);
  }
}

#define CE(T, s)                                                                                                       \
  extern "C" __global__ void ce_fwd_##s(const T* logits, const int* labels, float* loss, float* lse, int V, int ignore) { \
    ce_fwd<T>(logits, labels, loss, lse, V, ignore);                                                                   \
  }                                                                                                                    \
  extern "C" __global__ void ce_bwd_##s(const T* logits, const int* labels, const float* lse, T* d, int V, int ignore,   \
                                        float scale) {                                                                 \
    ce_bwd<T>(logits, labels, lse, d, V, ignore, scale);                                                               \
  }
FOR_FLOATS(CE)
