// Dropout with a counter-based mask (Philox4x32-10, as cuRAND and PyTorch's CUDA dropout use it):
// element i is dropped when word i % 4 of Philox(counter [i / 4 as 64 bits, call, 0], key [k0, k1])
// is below `thresh` (floor(p * 2^32)); kept ones are multiplied by `scale` (1 / (1 - p) in float32).
// The key is the step's base seed, read from device memory (the step state the host writes once per
// step); `call` numbers the dropout calls of a step, a launch constant, so a replayed launch draws a
// fresh mask each step. The mask is never stored: the backward is the same launch on dy. Bit for bit
// the CPU backend's src/backends/cpu/dropout.ts. A thread takes a chunk of 8 elements (two Philox
// calls, 16-byte accesses: common.cuh) where x and out are 16-byte aligned, else and for the tail
// a group of 4 (one call). With `accumulate`, out += the masked x instead (a gradient gathered in
// place: the LoRA branch's dx added to the base layer's).
#include "common.cuh"

__device__ __forceinline__ void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += 0x9e3779b9u;
      k1 += 0xbb67ae85u;
    }
    const uint32_t hi0 = __umulhi(0xd2511f53u, c[0]), lo0 = 0xd2511f53u * c[0];
    const uint32_t hi1 = __umulhi(0xcd9e8d57u, c[2]), lo1 = 0xcd9e8d57u * c[2];
    const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
  }
}

// The four Philox words of group g (elements 4g .. 4g+3) of dropout call `call`.
__device__ __forceinline__ void dropout_mask(i64 g, uint32_t call, uint32_t k0, uint32_t k1, uint32_t c[4]) {
  c[0] = (uint32_t)g;
  c[1] = (uint32_t)((unsigned long long)g >> 32);
  c[2] = call;
  c[3] = 0u;
  philox4x32_10(c, k0, k1);
}

template <typename T>
__device__ void dropout(const T* x, T* out, i64 n, uint32_t thresh, float scale, const uint32_t* seed, uint32_t call,
                        int accumulate) {
  const uint32_t k0 = seed[0], k1 = seed[1];
  const i64 head = aligned16(x) && aligned16(out) ? n / CHUNK * CHUNK : 0;  // a multiple of 4: whole groups
  GRID_LOOP(v, head / CHUNK) {
    float a[CHUNK];
    ld_chunk(x, v * CHUNK, a);
#pragma unroll
    for (int h = 0; h < CHUNK / 4; h++) {
      uint32_t c[4];
      dropout_mask(v * (CHUNK / 4) + h, call, k0, k1, c);
#pragma unroll
      for (int j = 0; j < 4; j++) a[4 * h + j] *= c[j] < thresh ? 0.f : scale;
    }
    if (accumulate) {
      float o[CHUNK];
      ld_chunk(out, v * CHUNK, o);
#pragma unroll
      for (int j = 0; j < CHUNK; j++) a[j] += o[j];
    }
    st_chunk(out, v * CHUNK, a);
  }
  const i64 groups = (n - head + 3) >> 2;
  GRID_LOOP(t, groups) {
    const i64 g = (head >> 2) + t;
    uint32_t c[4];
    dropout_mask(g, call, k0, k1, c);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const i64 i = 4 * g + j;
      if (i < n) st(out, i, (accumulate ? ld(out, i) : 0.f) + ld(x, i) * (c[j] < thresh ? 0.f : scale));
    }
  }
}

// seed: uint32 [2], the step's base seed (a step-state buffer).
#define DROPOUT(T, s)                                                                                           \
  extern "C" __global__ void dropout_##s(const T* x, T* out, i64 n, unsigned thresh, float scale,              \
                                         const unsigned* seed, unsigned call, int accumulate) {                \
    dropout<T>(x, out, n, thresh, scale, seed, call, accumulate);                                              \
  }
FOR_FLOATS(DROPOUT)
