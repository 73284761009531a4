// Choosing the next token where the logits are: the first index of the largest logit (greedy),
// and the candidates of Hugging Face's temperature then top-k (every token whose logit / t reaches
// the k-th largest, ties included), so a decoded token sends back one id or a few dozen candidates
// instead of its whole row of logits (152k values at Qwen's vocabulary). The CPU twins are in
// src/backends/cpu/sampling.ts.
//   sample_argmax:  one block of SAMPLE_THREADS; each thread the first largest of its strided share,
//                   then a tree in shared memory that keeps the smaller index on ties.
//   topk_kth:       one block; radix select of the k-th largest logit over the order-preserving
//                   bit keys of its float32 value, 8 bits per pass (256-bin shared histograms).
//                   Dividing by t > 0 keeps the order, so the k-th largest of logit / t is the
//                   k-th largest logit divided by t.
//   topk_gather:    grid-stride; every token with fl(logit / t) >= fl(kth / t), -inf left out,
//                   appended (atomically, in no order) to out = [count | ids[cap] | values[cap]],
//                   values as float32 bits; the division is done in double (t passed as its 64
//                   bits) and rounded once, as JavaScript divides a Float32Array's value and
//                   stores it back.
#include "common.cuh"

// float32 bits as an unsigned key with the same order (negatives reversed, below the positives)
__device__ __forceinline__ unsigned order_key(float v) {
  const unsigned u = __float_as_uint(v);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}
__device__ __forceinline__ float key_value(unsigned k) { return __uint_as_float(k & 0x80000000u ? k & 0x7fffffffu : ~k); }

#define SAMPLE_THREADS 1024

// (value, index) pairs: whether b wins over a (the larger value, the smaller index on ties; index < 0 is none)
__device__ __forceinline__ bool wins(float bv, i64 bi, float av, i64 ai) {
  return bi >= 0 && (ai < 0 || bv > av || (bv == av && bi < ai));
}

template <typename T>
__device__ void sample_argmax(const T* x, i64 n, int* out) {
  __shared__ float vals[SAMPLE_THREADS];
  __shared__ i64 idxs[SAMPLE_THREADS];
  float best = -INFINITY;
  i64 at = -1;
  for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = ld(x, i);
    if (wins(v, i, best, at)) best = v, at = i;
  }
  vals[threadIdx.x] = best;
  idxs[threadIdx.x] = at;
  for (int half = blockDim.x / 2; half > 0; half /= 2) {  // blockDim.x a power of two
    __syncthreads();
    if ((int)threadIdx.x < half && wins(vals[threadIdx.x + half], idxs[threadIdx.x + half], vals[threadIdx.x], idxs[threadIdx.x])) {
      vals[threadIdx.x] = vals[threadIdx.x + half];
      idxs[threadIdx.x] = idxs[threadIdx.x + half];
    }
  }
  if (threadIdx.x == 0) out[0] = (int)(idxs[0] < 0 ? 0 : idxs[0]);
}

// kth (written): the order key of the k-th largest of x[0..n), 1 <= k <= n
template <typename T>
__device__ void topk_kth(const T* x, i64 n, int k, unsigned* kth) {
  __shared__ unsigned hist[256];
  __shared__ unsigned prefix, remaining;
  if (threadIdx.x == 0) prefix = 0, remaining = (unsigned)k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();  // also publishes prefix and remaining
    const unsigned high = shift == 24 ? 0u : ~0u << (shift + 8);  // the bits already chosen
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
      const unsigned key = order_key(ld(x, i));
      if ((key & high) == (prefix & high)) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // the bin, from the top, that holds the remaining-th largest
      unsigned above = 0;
      for (int b = 255; b >= 0; b--) {
        if (above + hist[b] >= remaining) {
          prefix |= (unsigned)b << shift;
          remaining -= above;
          break;
        }
        above += hist[b];
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) kth[0] = prefix;
}

template <typename T>
__device__ void topk_gather(const T* x, i64 n, const unsigned* kth, i64 tBits, int cap, int* out) {
  const double t = __longlong_as_double(tBits);
  const float bar = (float)((double)key_value(kth[0]) / t);
  GRID_LOOP(i, n) {
    const float v = ld(x, i);
    if (v == -INFINITY) continue;
    const float s = (float)((double)v / t);
    if (s >= bar) {
      const int slot = atomicAdd(out, 1);
      if (slot < cap) {
        out[1 + slot] = (int)i;
        out[1 + cap + slot] = __float_as_int(s);
      }
    }
  }
}

#define SAMPLING(T, s)                                                                                                       \
  extern "C" __global__ void sample_argmax_##s(const T* x, i64 n, int* out) { sample_argmax<T>(x, n, out); }                 \
  extern "C" __global__ void topk_kth_##s(const T* x, i64 n, int k, unsigned* kth) { topk_kth<T>(x, n, k, kth); }            \
  extern "C" __global__ void topk_gather_##s(const T* x, i64 n, const unsigned* kth, i64 tBits, int cap, int* out) {       \
    topk_gather<T>(x, n, kth, tBits, cap, out);                                                                              \
  }
FOR_FLOATS(SAMPLING)
