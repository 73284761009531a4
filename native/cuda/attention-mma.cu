// Flash attention on tensor cores (FlashAttention-2's scheme) for bfloat16 and float16 q, k, v and
// head dimensions D in {32, 64, 96, 128}; the same contract as attention.cu, which serves float32
// and other head dimensions: q [B,Tq,Hq,D], k/v [B,Tk,Hkv,D] (GQA: query head h reads kv head
// h / (Hq/Hkv)), segments and tiles from attn_tiles, causal masks aligned bottom-right (query i sees
// keys j <= i + kLen - qLen), lse [B,Hq,Tq] in natural log, delta = rowsum(dO * O) from
// attn_bwd_delta.
//
// Every product is mma.m16n8k16 (mma.cuh) with float32 accumulators; a warp owns 16 rows of each
// product. Softmax runs in registers on the accumulator fragments, in log2 units (exp2 is one
// instruction). P and dS are rounded to the input dtype before they multiply V, K or Q, as
// FlashAttention does. Shared tiles are row-major with PAD extra elements per row, which makes
// the fragment loads (ldmatrix, mma.cuh) free of bank conflicts.
//   forward  grid (query tiles of BM rows, Hq), 4 warps: S = Q K^T, online softmax, O += P V;
//            attn_mma_fwd_pipe_* (XTUNER_CUDA_ATTENTION=pipe) brings K and V tiles by cp.async,
//            each while the other is in use.
//   dQ       grid (query tiles of BM rows, Hq): recomputes S and dP = dO V^T per key tile,
//            dS = P * (dP - delta), dQ += dS K.
//   dK, dV   grid (key tiles of BN keys, Hkv x splits), a warp per 16 keys: walks `per` query
//            heads of the GQA group (all of them when splits = 1) and the query rows that see its
//            keys, with S^T = K Q^T and dP^T = V dO^T, dV += P^T dO, dK += dS^T Q, and writes each
//            key row once (no atomics, deterministic). Where a kv head per key tile gives too few
//            blocks to fill the GPU (GQA: Qwen2.5-0.5B's 2 kv heads give 64 blocks at 2048
//            tokens, each walking 7 query heads), the group is split over blocks: each writes
//            float32 partial sums, and attn_mma_dkdv_sum adds them in a fixed order.
// dQ is a pass of its own rather than atomics from the dK/dV pass: two more products per tile,
// and the same result on every run.
#include "async.cuh"
#include "attention.cuh"
#include "mma.cuh"

namespace flash {

constexpr int BM = 64;   // query rows per block (4 warps x 16) in the forward and dQ kernels
constexpr int BN = 64;   // keys per tile in the forward, per block in dK/dV
constexpr int BKQ = 32;  // keys per tile in dQ (fewer live registers: it holds dP too)
constexpr int BQ = 32;   // query rows per step of dK/dV
constexpr int PAD = 8;   // elements added to each shared row
constexpr int THREADS = 128;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

// Rows [r0, r0 + n) of head h of x [..., H, D], counted from token row tok0, into a shared tile
// [n][D + PAD]; rows at or past `valid` become zeros (so 0 * tile stays 0). Whole block, 16-byte
// chunks (the host checks the alignment).
template <typename T, int D>
__device__ __forceinline__ void load_tile(T* tile, const T* x, i64 tok0, int r0, int n, int valid, int H, int h) {
  constexpr int C = D / 8;  // 16-byte chunks per row
  for (int e = threadIdx.x; e < n * C; e += blockDim.x) {
    const int r = e / C, c = (e % C) * 8;
    uint4 val = {0u, 0u, 0u, 0u};
    if (r0 + r < valid) val = *reinterpret_cast<const uint4*>(x + ((tok0 + r0 + r) * H + h) * D + c);
    *reinterpret_cast<uint4*>(tile + r * (D + PAD) + c) = val;
  }
}

// x[idx] and x[idx + 1] in one store (idx even): 4 bytes of 16-bit floats, or 8 of float32.
template <typename T>
__device__ __forceinline__ void store2(T* x, i64 idx, float a, float b) {
  *reinterpret_cast<u32*>(x + idx) = pack2<T>(a, b);
}
__device__ __forceinline__ void store2(float* x, i64 idx, float a, float b) { *reinterpret_cast<float2*>(x + idx) = make_float2(a, b); }

// Row r (0: c0,c1; 1: c2,c3) of this lane's accumulators times `mul`, into x from element `base`
// (the row's first element plus 2t): D/8 stores of two values.
template <typename T, int D>
__device__ __forceinline__ void store_row(T* x, i64 base, const float (&acc)[D / 8][4], int r, float mul) {
#pragma unroll
  for (int n = 0; n < D / 8; n++) store2(x, base + 8 * n, acc[n][2 * r] * mul, acc[n][2 * r + 1] * mul);
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// s[16][N] += A[16][D] X^T for a warp's 16 rows: A as register fragments, X [N][ld] one row per
// column of s (K for scores, V for dP = dO V^T).
template <typename T, int N, int D>
__device__ __forceinline__ void mma_rows_xt(float (&s)[N / 8][4], const u32 (&a)[D / 16][4], const T* X, int ld) {
#pragma unroll
  for (int n = 0; n < N / 8; n++)
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      u32 b[2];
      frag_b_rows(b, X, ld, 8 * n, 16 * kk);
      mma16816<T>(s[n], a[kk], b);
    }
}

// acc[16][D] += P[16][K] Y for a warp's 16 rows: P the float32 accumulators of an earlier product
// (rounded to T here), Y [K][ld] row-major in shared memory (V for O, K for dQ, dO for dV, Q for dK).
template <typename T, int K, int D>
__device__ __forceinline__ void mma_acc_py(float (&acc)[D / 8][4], const float (&p)[K / 8][4], const T* Y, int ld) {
#pragma unroll
  for (int kk = 0; kk < K / 16; kk++) {
    u32 a[4];
    frag_a_from_c<T>(a, p[2 * kk], p[2 * kk + 1]);
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
      u32 b[2];
      frag_b_cols(b, Y, ld, 16 * kk, 8 * n);
      mma16816<T>(acc[n], a, b);
    }
  }
}

// load_tile through cp.async (async.cuh): the copies are in flight until the caller's
// cp_async_wait; rows at or past `valid` are zeroed with plain stores at once.
template <typename T, int D>
__device__ __forceinline__ void load_tile_async(T* tile, const T* x, i64 tok0, int r0, int n, int valid, int H, int h) {
  constexpr int C = D / 8;  // 16-byte chunks per row
  for (int e = threadIdx.x; e < n * C; e += blockDim.x) {
    const int r = e / C, c = (e % C) * 8;
    T* dst = tile + r * (D + PAD) + c;
    if (r0 + r < valid) cp_async16(dst, x + ((tok0 + r0 + r) * H + h) * D + c);
    else *reinterpret_cast<uint4*>(dst) = uint4{0u, 0u, 0u, 0u};
  }
}

// shared: Qs [BM][LD], Ks, Vs [BN][LD]. PIPE (version 4): K and V tiles come by cp.async, each
// while the other is being used, as FlashAttention-2 schedules them: V_j is in flight during
// S = Q K_j^T and the softmax, K_{j+1} during O += P V_j; the same shared memory as version 3.1,
// whose loads (PIPE false) stop every warp at each tile.
template <typename T, int D, bool PIPE>
__device__ void fwd(const T* q, const T* k, const T* v, T* out, float* lse, const int* segs, const int* tile, int Tq,
                    int Tk, int Hq, int Hkv, float scale, int causal) {
  extern __shared__ float sm[];
  constexpr int LD = D + PAD;
  T* Qs = reinterpret_cast<T*>(sm);
  T* Ks = Qs + BM * LD;
  T* Vs = Ks + BN * LD;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, t = lane & 3;
  const Seg sg = seg_of(segs, tile[0]);
  const int i0 = tile[1], h = blockIdx.y, hk = h / (Hq / Hkv), off = sg.kLen - sg.qLen;
  const i64 qTok0 = (i64)sg.b * Tq + sg.start, kTok0 = (i64)sg.b * Tk + sg.start;
  const int w0 = i0 + 16 * warp;                           // this warp's first row in the segment
  const int row[2] = {w0 + (lane >> 2), w0 + (lane >> 2) + 8};  // the rows of c0,c1 and c2,c3
  const int kEnd = causal ? min(sg.kLen, min(sg.qLen, i0 + BM) + off) : sg.kLen;  // keys any row here sees
  const int wEnd = w0 >= sg.qLen ? 0 : causal ? min(sg.kLen, w0 + 16 + off) : sg.kLen;  // keys this warp sees
  const float sl2 = scale * LOG2E;

  if constexpr (PIPE) {
    load_tile_async<T, D>(Qs, q, qTok0, i0, BM, sg.qLen, Hq, h);
    if (kEnd > 0) load_tile_async<T, D>(Ks, k, kTok0, 0, BN, sg.kLen, Hkv, hk);
    cp_async_commit();
    cp_async_wait<0>();
  } else {
    load_tile<T, D>(Qs, q, qTok0, i0, BM, sg.qLen, Hq, h);
  }
  __syncthreads();
  u32 qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) frag_a(qa[kk], Qs, LD, 16 * warp, 16 * kk);

  float o[D / 8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  for (int j0 = 0; j0 < kEnd; j0 += BN) {
    if constexpr (PIPE) {
      // K_j is in place (waited for, and a barrier since); V_j's copies overlap the scores
      load_tile_async<T, D>(Vs, v, kTok0, j0, BN, sg.kLen, Hkv, hk);
      cp_async_commit();
    } else {
      __syncthreads();  // the previous tile is no longer read
      load_tile<T, D>(Ks, k, kTok0, j0, BN, sg.kLen, Hkv, hk);
      load_tile<T, D>(Vs, v, kTok0, j0, BN, sg.kLen, Hkv, hk);
      __syncthreads();
    }
    const bool active = j0 < wEnd;  // uniform per warp; every warp still takes every barrier
    float s[BN / 8][4] = {};         // S [16 rows][BN keys], 8 keys per fragment; then P
    if (active) {
      mma_rows_xt<T, BN, D>(s, qa, Ks, LD);
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int n = 0; n < BN / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int j = j0 + 8 * n + 2 * t + (e & 1), i = row[e >> 1];
          const bool seen = j < sg.kLen && i < sg.qLen && (!causal || j <= i + off);
          s[n][e] = seen ? s[n][e] * sl2 : -INFINITY;
          mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
        }
      float corr[2], ls[2] = {0.f, 0.f};
#pragma unroll
      for (int r = 0; r < 2; r++) {
        mx[r] = quad_max(mx[r]);
        corr[r] = mx[r] == -INFINITY ? 1.f : exp2f(m[r] - mx[r]);  // no key seen yet: nothing to rescale
        m[r] = mx[r];
      }
#pragma unroll
      for (int n = 0; n < BN / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const float mr = m[e >> 1];
          s[n][e] = mr == -INFINITY ? 0.f : exp2f(s[n][e] - mr);  // now P (unnormalised)
          ls[e >> 1] += s[n][e];
        }
#pragma unroll
      for (int r = 0; r < 2; r++) l[r] = l[r] * corr[r] + ls[r];  // per lane; summed over the quad at the end
#pragma unroll
      for (int n = 0; n < D / 8; n++) {
        o[n][0] *= corr[0];
        o[n][1] *= corr[0];
        o[n][2] *= corr[1];
        o[n][3] *= corr[1];
      }
    }
    if constexpr (PIPE) {
      cp_async_wait<0>();
      __syncthreads();  // V_j in place; every warp is done with K_j
      if (j0 + BN < kEnd) {
        load_tile_async<T, D>(Ks, k, kTok0, j0 + BN, BN, sg.kLen, Hkv, hk);  // K_{j+1} overlaps P V_j
        cp_async_commit();
      }
    }
    if (active) mma_acc_py<T, BN, D>(o, s, Vs, LD);
    if constexpr (PIPE) {
      cp_async_wait<0>();
      __syncthreads();  // K_{j+1} in place; every warp is done with V_j
    }
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] = quad_sum(l[r]);
    const int i = row[r];
    if (i >= sg.qLen) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    const i64 base = ((qTok0 + i) * Hq + h) * D + 2 * t;
    store_row<T, D>(out, base, o, r, inv);
    if (t == 0) lse[((i64)sg.b * Hq + h) * Tq + sg.start + i] = l[r] > 0.f ? (m[r] + log2f(l[r])) * LN2 : -INFINITY;
  }
}

// shared: Qs, dOs [BM][LD], Ks, Vs [BKQ][LD]. Rows outside every segment are zeroed by the host.
template <typename T, int D>
__device__ void bwd_dq(const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta, T* dq,
                       const int* segs, const int* tile, int Tq, int Tk, int Hq, int Hkv, float scale, int causal) {
  extern __shared__ float sm[];
  constexpr int LD = D + PAD;
  T* Qs = reinterpret_cast<T*>(sm);
  T* dOs = Qs + BM * LD;
  T* Ks = dOs + BM * LD;
  T* Vs = Ks + BKQ * LD;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, t = lane & 3;
  const Seg sg = seg_of(segs, tile[0]);
  const int i0 = tile[1], h = blockIdx.y, hk = h / (Hq / Hkv), off = sg.kLen - sg.qLen;
  const i64 qTok0 = (i64)sg.b * Tq + sg.start, kTok0 = (i64)sg.b * Tk + sg.start;
  const int w0 = i0 + 16 * warp;
  const int row[2] = {w0 + (lane >> 2), w0 + (lane >> 2) + 8};
  const int kEnd = causal ? min(sg.kLen, min(sg.qLen, i0 + BM) + off) : sg.kLen;
  const int wEnd = w0 >= sg.qLen ? 0 : causal ? min(sg.kLen, w0 + 16 + off) : sg.kLen;
  const float sl2 = scale * LOG2E;
  float L2[2], dl[2];  // lse in log2 units and delta of this lane's rows
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const i64 stat = ((i64)sg.b * Hq + h) * Tq + sg.start + row[r];
    L2[r] = row[r] < sg.qLen ? lse[stat] * LOG2E : -INFINITY;
    dl[r] = row[r] < sg.qLen ? delta[stat] : 0.f;
  }

  load_tile<T, D>(Qs, q, qTok0, i0, BM, sg.qLen, Hq, h);
  load_tile<T, D>(dOs, dout, qTok0, i0, BM, sg.qLen, Hq, h);
  __syncthreads();
  u32 qa[D / 16][4], da[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    frag_a(qa[kk], Qs, LD, 16 * warp, 16 * kk);
    frag_a(da[kk], dOs, LD, 16 * warp, 16 * kk);
  }

  float acc[D / 8][4] = {};
  for (int j0 = 0; j0 < kEnd; j0 += BKQ) {
    __syncthreads();
    load_tile<T, D>(Ks, k, kTok0, j0, BKQ, sg.kLen, Hkv, hk);
    load_tile<T, D>(Vs, v, kTok0, j0, BKQ, sg.kLen, Hkv, hk);
    __syncthreads();
    if (j0 >= wEnd) continue;
    float s[BKQ / 8][4] = {}, dp[BKQ / 8][4] = {};  // S and dP [16 rows][BKQ keys]
    mma_rows_xt<T, BKQ, D>(s, qa, Ks, LD);
    mma_rows_xt<T, BKQ, D>(dp, da, Vs, LD);
#pragma unroll
    for (int n = 0; n < BKQ / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int j = j0 + 8 * n + 2 * t + (e & 1), r = e >> 1, i = row[r];
        const bool seen = j < sg.kLen && L2[r] != -INFINITY && (!causal || j <= i + off);
        const float p = seen ? exp2f(s[n][e] * sl2 - L2[r]) : 0.f;
        s[n][e] = p * (dp[n][e] - dl[r]);  // dS
      }
    mma_acc_py<T, BKQ, D>(acc, s, Ks, LD);
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (row[r] >= sg.qLen) continue;
    const i64 base = ((qTok0 + row[r]) * Hq + h) * D + 2 * t;
    store_row<T, D>(dq, base, acc, r, scale);
  }
}

// shared: Ks, Vs [BN][LD], Qs, dOs [BQ][LD], then lse (log2 units) and delta [BQ] as float32.
// Keys outside every segment are zeroed by the host. blockIdx.y = kv head * splits + split, with
// splits = ceil(group / per); the split takes query heads [split * per, +per) of the group. part
// null (splits = 1): dk, dv written in T; else part [B*Tk][Hkv][splits][2][D] float32 (dK, dV) for
// attn_mma_dkdv_sum.
template <typename T, int D>
__device__ void bwd_dkdv(const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta, T* dk,
                         T* dv, const int* segs, const int* tile, int Tq, int Tk, int Hq, int Hkv, float scale, int causal,
                         int per, float* part) {
  extern __shared__ float sm[];
  constexpr int LD = D + PAD;
  T* Ks = reinterpret_cast<T*>(sm);
  T* Vs = Ks + BN * LD;
  T* Qs = Vs + BN * LD;
  T* dOs = Qs + BQ * LD;
  float* Ls = reinterpret_cast<float*>(dOs + BQ * LD);
  float* Ds = Ls + BQ;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, t = lane & 3;
  const Seg sg = seg_of(segs, tile[0]);
  const int group = Hq / Hkv, splits = (group + per - 1) / per, hk = blockIdx.y / splits, split = blockIdx.y % splits;
  const int hFirst = hk * group + split * per, hEnd = min(hFirst + per, (hk + 1) * group);
  const int j0 = tile[1], off = sg.kLen - sg.qLen;
  const i64 qTok0 = (i64)sg.b * Tq + sg.start, kTok0 = (i64)sg.b * Tk + sg.start;
  const int wj0 = j0 + 16 * warp;                               // this warp's first key
  const int key[2] = {wj0 + (lane >> 2), wj0 + (lane >> 2) + 8};  // the keys of c0,c1 and c2,c3
  const float sl2 = scale * LOG2E;

  load_tile<T, D>(Ks, k, kTok0, j0, BN, sg.kLen, Hkv, hk);
  load_tile<T, D>(Vs, v, kTok0, j0, BN, sg.kLen, Hkv, hk);
  float dK[D / 8][4] = {}, dV[D / 8][4] = {};  // [16 keys][D]
  const int iFirst = causal ? max(0, j0 - off) : 0;  // the first query row that sees key j0
  for (int h = hFirst; h < hEnd; h++) {
    for (int i0 = iFirst; i0 < sg.qLen; i0 += BQ) {
      __syncthreads();  // the previous step's tiles are no longer read
      load_tile<T, D>(Qs, q, qTok0, i0, BQ, sg.qLen, Hq, h);
      load_tile<T, D>(dOs, dout, qTok0, i0, BQ, sg.qLen, Hq, h);
      for (int e = threadIdx.x; e < BQ; e += blockDim.x) {
        const i64 stat = ((i64)sg.b * Hq + h) * Tq + sg.start + i0 + e;
        const bool in = i0 + e < sg.qLen;
        Ls[e] = in ? lse[stat] * LOG2E : -INFINITY;
        Ds[e] = in ? delta[stat] : 0.f;
      }
      __syncthreads();
      if (wj0 >= sg.kLen || (causal && wj0 > i0 + BQ - 1 + off)) continue;  // no row here sees these keys
      float s[BQ / 8][4] = {}, dp[BQ / 8][4] = {};  // S^T and dP^T [16 keys][BQ rows]
#pragma unroll
      for (int kk = 0; kk < D / 16; kk++) {
        u32 ka[4], va[4];
        frag_a(ka, Ks, LD, 16 * warp, 16 * kk);
        frag_a(va, Vs, LD, 16 * warp, 16 * kk);
#pragma unroll
        for (int n = 0; n < BQ / 8; n++) {
          u32 b[2];
          frag_b_rows(b, Qs, LD, 8 * n, 16 * kk);
          mma16816<T>(s[n], ka, b);
          frag_b_rows(b, dOs, LD, 8 * n, 16 * kk);
          mma16816<T>(dp[n], va, b);
        }
      }
#pragma unroll
      for (int n = 0; n < BQ / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int c = 8 * n + 2 * t + (e & 1), j = key[e >> 1];
          const bool seen = j < sg.kLen && Ls[c] != -INFINITY && (!causal || j <= i0 + c + off);
          const float p = seen ? exp2f(s[n][e] * sl2 - Ls[c]) : 0.f;
          s[n][e] = p;                       // P^T
          dp[n][e] = p * (dp[n][e] - Ds[c]);  // dS^T
        }
      mma_acc_py<T, BQ, D>(dV, s, dOs, LD);
      mma_acc_py<T, BQ, D>(dK, dp, Qs, LD);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (key[r] >= sg.kLen) continue;
    const i64 kRow = (kTok0 + key[r]) * Hkv + hk;
    if (part) {
      const i64 base = (kRow * splits + split) * 2 * D + 2 * t;
      store_row<float, D>(part, base, dK, r, scale);
      store_row<float, D>(part, base + D, dV, r, 1.f);
    } else {
      store_row<T, D>(dk, kRow * D + 2 * t, dK, r, scale);
      store_row<T, D>(dv, kRow * D + 2 * t, dV, r, 1.f);
    }
  }
}

// dk, dv [rows][D] = the sums over splits of part [rows][splits][2][D], in split order.
template <typename T>
__device__ void dkdv_sum(const float* part, int splits, int D, i64 n, T* dk, T* dv) {
  GRID_LOOP(i, n) {
    const float* p = part + (i / D) * splits * 2 * D + i % D;
    float a = 0.f, b = 0.f;
    for (int s = 0; s < splits; s++) {
      a += p[2 * s * D];
      b += p[(2 * s + 1) * D];
    }
    st(dk, i, a);
    st(dv, i, b);
  }
}

}  // namespace flash

#define FLASH(T, s, D)                                                                                                    \
  extern "C" __global__ void __launch_bounds__(flash::THREADS)                                                           \
      attn_mma_fwd_##s##_d##D(const T* q, const T* k, const T* v, T* out, float* lse, const int* segs, const int* tiles, \
                              int Tq, int Tk, int Hq, int Hkv, float scale, int causal) {                                \
    const int* tile = tiles + 2 * query_tile();                                                                         \
    if (idle_tile(tile)) return;                                                                                        \
    flash::fwd<T, D, false>(q, k, v, out, lse, segs, tile, Tq, Tk, Hq, Hkv, scale, causal);                             \
  }                                                                                                                       \
  extern "C" __global__ void __launch_bounds__(flash::THREADS)                                                           \
      attn_mma_fwd_pipe_##s##_d##D(const T* q, const T* k, const T* v, T* out, float* lse, const int* segs,             \
                                   const int* tiles, int Tq, int Tk, int Hq, int Hkv, float scale, int causal) {         \
    const int* tile = tiles + 2 * query_tile();                                                                         \
    if (idle_tile(tile)) return;                                                                                        \
    flash::fwd<T, D, true>(q, k, v, out, lse, segs, tile, Tq, Tk, Hq, Hkv, scale, causal);                              \
  }                                                                                                                       \
  extern "C" __global__ void __launch_bounds__(flash::THREADS)                                                           \
      attn_mma_bwd_dq_##s##_d##D(const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta, \
                                 T* dq, const int* segs, const int* tiles, int Tq, int Tk, int Hq, int Hkv, float scale,  \
                                 int causal) {                                                                            \
    const int* tile = tiles + 2 * query_tile();                                                                         \
    if (idle_tile(tile)) return;                                                                                        \
    flash::bwd_dq<T, D>(q, k, v, dout, lse, delta, dq, segs, tile, Tq, Tk, Hq, Hkv, scale, causal);                     \
  }                                                                                                                       \
  extern "C" __global__ void __launch_bounds__(flash::THREADS)                                                           \
      attn_mma_bwd_dkdv_##s##_d##D(const T* q, const T* k, const T* v, const T* dout, const float* lse,                  \
                                   const float* delta, T* dk, T* dv, const int* segs, const int* tiles, int Tq, int Tk,  \
                                   int Hq, int Hkv, float scale, int causal, int per, float* part) {                     \
    const int* tile = tiles + 2 * key_tile();                                                                           \
    if (idle_tile(tile)) return;                                                                                        \
    flash::bwd_dkdv<T, D>(q, k, v, dout, lse, delta, dk, dv, segs, tile, Tq, Tk, Hq, Hkv, scale, causal, per, part);    \
  }
#define FLASH_DIMS(T, s)                                                                                               \
  FLASH(T, s, 32) FLASH(T, s, 64) FLASH(T, s, 96) FLASH(T, s, 128)                                                     \
  extern "C" __global__ void attn_mma_dkdv_sum_##s(const float* part, int splits, int D, i64 n, T* dk, T* dv) {        \
    flash::dkdv_sum<T>(part, splits, D, n, dk, dv);                                                                    \
  }
FLASH_DIMS(bf16, bf16)
FLASH_DIMS(f16, f16)
