// Embedding lookup (row gather of raw elements, so any 2- or 4-byte dtype) and its backward
// (scatter-add of dy rows into a float32 dw [V, H] with atomics: repeated ids add up).
#include "common.cuh"

template <typename E>
__device__ void embedding(const E* w, const int* ids, E* out, i64 n, int H) {
  GRID_LOOP(e, n * H) out[e] = w[(i64)ids[e / H] * H + e % H];
}
extern "C" __global__ void embedding_b2(const unsigned short* w, const int* ids, unsigned short* out, i64 n, int H) {
  embedding(w, ids, out, n, H);
}
extern "C" __global__ void embedding_b4(const unsigned int* w, const int* ids, unsigned int* out, i64 n, int H) {
  embedding(w, ids, out, n, H);
}

#define EMBEDDING_BWD(T, s)                                                                             \
  extern "C" __global__ void embedding_bwd_##s(const T* dy, const int* ids, float* dw, i64 n, int H) {   \
    GRID_LOOP(e, n * H) atomicAdd(dw + (i64)ids[e / H] * H + e % H, ld(dy, e));                         \
  }
FOR_FLOATS(EMBEDDING_BWD)
