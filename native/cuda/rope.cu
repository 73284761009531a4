// Rotary embedding, Hugging Face rotate_half convention, on x [B,T,H,D] with cos/sin [B|1,T,D]
// (batch stride csb, 0 to share one table). inverse != 0 applies the transposed rotation (the
// backward). A thread takes a chunk of 8 pairs (x1 = x[i..i+8), x2 = x[i+D/2..]: 16-byte accesses,
// common.cuh) where D/2 is a multiple of 8 and every pointer is 16-byte aligned, else one pair.
#include "common.cuh"

// out1, out2 of the pair (x1, x2) at column i with c1 = cos[i], c2 = cos[i + D/2], s1, s2 the same of sin.
__device__ __forceinline__ void rope_pair(float x1, float x2, float c1, float c2, float s1, float s2, int inverse, float& o1,
                                          float& o2) {
  if (inverse) {
    o1 = x1 * c1 + x2 * s2;
    o2 = x2 * c2 - x1 * s1;
  } else {
    o1 = x1 * c1 - x2 * s1;
    o2 = x2 * c2 + x1 * s2;
  }
}

template <typename T>
__device__ void rope(const T* x, const T* cos, const T* sin, T* out, int B, int T_, int H, int D, i64 csb, int inverse) {
  const int half = D >> 1;
  const i64 n = (i64)B * T_ * H * half;
  if (half % CHUNK == 0 && csb % CHUNK == 0 && aligned16(x) && aligned16(cos) && aligned16(sin) && aligned16(out)) {
    const int chunks = half / CHUNK;  // per (b, t, h)
    GRID_LOOP(e, n / CHUNK) {
      const int i = (int)(e % chunks) * CHUNK;
      const i64 bth = e / chunks;  // (b * T + t) * H + h
      const i64 bt = bth / H;
      const i64 cs = bt / T_ * csb + bt % T_ * D;
      const i64 base = bth * D;
      float x1[CHUNK], x2[CHUNK], c1[CHUNK], c2[CHUNK], s1[CHUNK], s2[CHUNK];
      ld_chunk(x, base + i, x1);
      ld_chunk(x, base + i + half, x2);
      ld_chunk(cos, cs + i, c1);
      ld_chunk(cos, cs + i + half, c2);
      ld_chunk(sin, cs + i, s1);
      ld_chunk(sin, cs + i + half, s2);
#pragma unroll
      for (int j = 0; j < CHUNK; j++) rope_pair(x1[j], x2[j], c1[j], c2[j], s1[j], s2[j], inverse, x1[j], x2[j]);
      st_chunk(out, base + i, x1);
      st_chunk(out, base + i + half, x2);
    }
    return;
  }
  GRID_LOOP(e, n) {
    const int i = (int)(e % half);
    const i64 bth = e / half;
    const i64 bt = bth / H;
    const i64 cs = bt / T_ * csb + bt % T_ * D;
    const i64 base = bth * D;
    float o1, o2;
    rope_pair(ld(x, base + i), ld(x, base + i + half), ld(cos, cs + i), ld(cos, cs + i + half), ld(sin, cs + i),
              ld(sin, cs + i + half), inverse, o1, o2);
    st(out, base + i, o1);
    st(out, base + i + half, o2);
  }
}

#define ROPE(T, s)                                                                                               \
  extern "C" __global__ void rope_##s(const T* x, const T* cos, const T* sin, T* out, int B, int T_, int H, int D, \
                                      i64 csb, int inverse) {                                                   \
    rope<T>(x, cos, sin, out, B, T_, H, D, csb, inverse);                                                       \
  }
FOR_FLOATS(ROPE)
