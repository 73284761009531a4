// Rotary embedding, Hugging Face rotate_half convention, on x [B,T,H,D] with cos/sin [B|1,T,D]
// (batch stride csb, 0 to share one table). inverse != 0 applies the transposed rotation (the
// backward). One thread per pair (x1 = x[i], x2 = x[i + D/2]).
#include "common.cuh"

template <typename T>
__device__ void rope(const T* x, const T* cos, const T* sin, T* out, int B, int T_, int H, int D, i64 csb, int inverse) {
  const int half = D >> 1;
  const i64 n = (i64)B * T_ * H * half;
  GRID_LOOP(e, n) {
    const int i = (int)(e % half);
    const i64 bth = e / half;  // (b * T + t) * H + h
    const i64 bt = bth / H;
    const i64 b = bt / T_, t = bt % T_;
    const i64 cs = b * csb + t * D;
    const i64 base = bth * D;
    const float x1 = ld(x, base + i), x2 = ld(x, base + i + half);
    if (inverse) {
      st(out, base + i, x1 * ld(cos, cs + i) + x2 * ld(sin, cs + i + half));
      st(out, base + i + half, x2 * ld(cos, cs + i + half) - x1 * ld(sin, cs + i));
    } else {
      st(out, base + i, x1 * ld(cos, cs + i) - x2 * ld(sin, cs + i));
      st(out, base + i + half, x2 * ld(cos, cs + i + half) + x1 * ld(sin, cs + i + half));
    }
  }
}

#define ROPE(T, s)                                                                                               \
  extern "C" __global__ void rope_##s(const T* x, const T* cos, const T* sin, T* out, int B, int T_, int H, int D, \
                                      i64 csb, int inverse) {                                                   \
    rope<T>(x, cos, sin, out, B, T_, H, D, csb, inverse);                                                       \
  }
FOR_FLOATS(ROPE)
