// Optimizer kernels: one AdamW step over a tensor (PyTorch semantics; each of param, grad and the
// two moments in its own dtype, chosen at run time) and the sum of squares of a tensor into one
// float32 slot (zeroed by the host first) for the global gradient norm.
#include "common.cuh"

// decay = 1 - lr * wd; stepSize = lr / (1 - b1^t); bc2Sqrt = sqrt(1 - b2^t), from the host in double.
extern "C" __global__ void adamw(void* p, int pc, const void* g, int gc, void* m, int mc, void* v, int vc, i64 n, float b1,
                                 float b2, float eps, float decay, float stepSize, float bc2Sqrt) {
  GRID_LOOP(i, n) {
    const float gi = ld_code(g, gc, i);
    const float mi = b1 * ld_code(m, mc, i) + (1.f - b1) * gi;
    const float vi = b2 * ld_code(v, vc, i) + (1.f - b2) * gi * gi;
    st_code(m, mc, i, mi);
    st_code(v, vc, i, vi);
    st_code(p, pc, i, ld_code(p, pc, i) * decay - stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps));
  }
}

#define SUMSQ(T, s)                                                             \
  extern "C" __global__ void sum_squares_##s(const T* x, i64 n, float* out) {   \
    __shared__ float scratch[32];                                               \
    float acc = 0.f;                                                            \
    GRID_LOOP(i, n) {                                                           \
      const float v = ld(x, i);                                                 \
      acc += v * v;                                                             \
    }                                                                           \
    acc = block_sum(acc, scratch);                                              \
    if (threadIdx.x == 0) atomicAdd(out, acc);                                  \
  }
FOR_FLOATS(SUMSQ)
