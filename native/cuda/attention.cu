// Scaled dot-product attention, flash-style, forward and backward, for q [B,Tq,Hq,D] and
// k/v [B,Tk,Hkv,D] (GQA: query head h reads kv head h / (Hq/Hkv)), D <= 256. attn_tiles cuts the
// token axis into segments (b, start, qLen, kLen) (whole rows, or the cuSeqlens pieces) and lists
// tiles (segment, first row) on the device: no work item ever crosses a segment and no T x T
// matrix exists.
// Causal masks are aligned bottom-right: query i sees keys j <= i + kLen - qLen.
//
// These CUDA-core kernels serve float32 and the head dimensions attention-mma.cu (tensor cores,
// bf16/f16) is not built for; attn_bwd_delta serves both. Mapping (float32 arithmetic):
// a tile of KT = 32 keys sits in shared memory, one key per lane; a warp owns one query row,
// computes its 32 scores at once (lane = key), merges them into an online softmax, and
// accumulates the output with lane = head dimension (D/32 values per lane).
//   forward   grid (query tiles of W rows, Hq), W warps: out, lse.
//   backward  attn_bwd_delta: delta = rowsum(dO * O) [B,Hq,Tq];
//             attn_bwd_dq:   grid (query tiles, Hq), like the forward, recomputing P from lse;
//             attn_bwd_dkdv: grid (key tiles, Hq), one warp per tile walks the query rows that see
//                            it, accumulating dK, dV in shared memory, then adds them atomically
//                            into float32 [B,Tk,Hkv,D] (heads of a GQA group add up there).
#include "attention.cuh"

#define KT 32
#define MAX_DT 8  // D / 32 values per lane

// Keys [j0, j0 + KT) of kv head hk of the segment starting at token row `row0` (= b*Tk + start).
template <typename T>
__device__ __forceinline__ void load_kv_tile(const T* k, const T* v, float* Ks, float* Vs, i64 row0, int j0, int kLen, int Hkv,
                                             int hk, int D) {
  const int Dp = D + 1;  // padded rows: lane = key reads are conflict-free
  for (int e = threadIdx.x; e < KT * D; e += blockDim.x) {
    const int j = e / D, d = e % D;
    float kv = 0.f, vv = 0.f;
    if (j0 + j < kLen) {
      const i64 g = ((row0 + j0 + j) * Hkv + hk) * D + d;
      kv = ld(k, g);
      vv = ld(v, g);
    }
    Ks[j * Dp + d] = kv;
    Vs[j * Dp + d] = vv;
  }
}

__device__ __forceinline__ float dot_row(const float* a, const float* b, int D) {
  float acc = 0.f;
  for (int d = 0; d < D; d++) acc += a[d] * b[d];
  return acc;
}

// shared: Ks, Vs [KT][D+1]; Qs [W][D]
template <typename T>
__device__ void attn_fwd(const T* q, const T* k, const T* v, T* out, float* lse, const int* segs, const int* tile, int Tq,
                         int Tk, int Hq, int Hkv, int D, float scale, int causal) {
  extern __shared__ float sm[];
  const int Dp = D + 1, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float* Ks = sm;
  float* Vs = Ks + KT * Dp;
  float* qs = Vs + KT * Dp + warp * D;
  const Seg sg = seg_of(segs, tile[0]);
  const int i0 = tile[1], h = blockIdx.y, hk = h / (Hq / Hkv), off = sg.kLen - sg.qLen;
  const int i = i0 + warp;  // this warp's query row within the segment
  const bool rowValid = i < sg.qLen;
  const i64 qRow = (((i64)sg.b * Tq + sg.start + i) * Hq + h) * D;
  if (rowValid) for (int d = lane; d < D; d += 32) qs[d] = ld(q, qRow + d);
  const int rows = min(nw, sg.qLen - i0);
  const int kEnd = causal ? min(sg.kLen, i0 + rows + off) : sg.kLen;  // keys any row here sees
  const int lim = causal ? min(sg.kLen, i + off + 1) : sg.kLen;      // keys this row sees
  float m = -INFINITY, l = 0.f, o[MAX_DT];
#pragma unroll
  for (int t = 0; t < MAX_DT; t++) o[t] = 0.f;
  for (int j0 = 0; j0 < kEnd; j0 += KT) {
    __syncthreads();
    load_kv_tile(k, v, Ks, Vs, (i64)sg.b * Tk + sg.start, j0, sg.kLen, Hkv, hk, D);
    __syncthreads();
    if (!rowValid || j0 >= lim) continue;  // uniform per warp
    const bool valid = j0 + lane < lim;
    const float s = valid ? scale * dot_row(qs, Ks + lane * Dp, D) : -INFINITY;
    const float mn = fmaxf(m, warp_max(s));  // finite: lane 0 is valid
    const float corr = expf(m - mn);
    const float p = valid ? expf(s - mn) : 0.f;
    l = l * corr + warp_sum(p);
    m = mn;
    const int jn = min(KT, lim - j0);
#pragma unroll
    for (int t = 0; t < MAX_DT; t++) o[t] *= corr;
    for (int jj = 0; jj < jn; jj++) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      const float* vr = Vs + jj * Dp;
#pragma unroll
      for (int t = 0; t < MAX_DT; t++)
        if (lane + 32 * t < D) o[t] += pj * vr[lane + 32 * t];
    }
  }
  if (!rowValid) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
  for (int t = 0; t < MAX_DT; t++)
    if (lane + 32 * t < D) st(out, qRow + lane + 32 * t, o[t] * inv);
  if (lane == 0) lse[((i64)sg.b * Hq + h) * Tq + sg.start + i] = l > 0.f ? m + logf(l) : -INFINITY;
}

// delta[b, h, t] = sum_d dO * O; one warp per (token, head).
template <typename T>
__device__ void attn_bwd_delta(const T* out, const T* dout, float* delta, i64 rows, int Tq, int Hq, int D) {
  const i64 r = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // whole warps leave together
  float acc = 0.f;
  for (int d = lane; d < D; d += 32) acc += ld(dout, r * D + d) * ld(out, r * D + d);
  acc = warp_sum(acc);
  const i64 tok = r / Hq;
  const int h = (int)(r % Hq);
  if (lane == 0) delta[(tok / Tq * Hq + h) * Tq + tok % Tq] = acc;
}

// shared: Ks, Vs [KT][D+1]; Qs, dOs [W][D]. dq is written for every row of a tile.
template <typename T>
__device__ void attn_bwd_dq(const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta, T* dq,
                            const int* segs, const int* tile, int Tq, int Tk, int Hq, int Hkv, int D, float scale,
                            int causal) {
  extern __shared__ float sm[];
  const int Dp = D + 1, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float* Ks = sm;
  float* Vs = Ks + KT * Dp;
  float* qs = Vs + KT * Dp + warp * D;
  float* dos = Vs + KT * Dp + nw * D + warp * D;
  const Seg sg = seg_of(segs, tile[0]);
  const int i0 = tile[1], h = blockIdx.y, hk = h / (Hq / Hkv), off = sg.kLen - sg.qLen;
  const int i = i0 + warp;
  const bool rowValid = i < sg.qLen;
  const i64 qRow = (((i64)sg.b * Tq + sg.start + i) * Hq + h) * D;
  const i64 stat = ((i64)sg.b * Hq + h) * Tq + sg.start + i;
  const float L = rowValid ? lse[stat] : -INFINITY, dl = rowValid ? delta[stat] : 0.f;
  if (rowValid)
    for (int d = lane; d < D; d += 32) {
      qs[d] = ld(q, qRow + d);
      dos[d] = ld(dout, qRow + d);
    }
  const int rows = min(nw, sg.qLen - i0);
  const int kEnd = causal ? min(sg.kLen, i0 + rows + off) : sg.kLen;
  const int lim = L == -INFINITY ? 0 : causal ? min(sg.kLen, i + off + 1) : sg.kLen;
  float acc[MAX_DT];
#pragma unroll
  for (int t = 0; t < MAX_DT; t++) acc[t] = 0.f;
  for (int j0 = 0; j0 < kEnd; j0 += KT) {
    __syncthreads();
    load_kv_tile(k, v, Ks, Vs, (i64)sg.b * Tk + sg.start, j0, sg.kLen, Hkv, hk, D);
    __syncthreads();
    if (!rowValid || j0 >= lim) continue;
    float ds = 0.f;
    if (j0 + lane < lim) {
      const float p = expf(scale * dot_row(qs, Ks + lane * Dp, D) - L);
      ds = p * (dot_row(dos, Vs + lane * Dp, D) - dl);  // dS = P * (dP - delta)
    }
    const int jn = min(KT, lim - j0);
    for (int jj = 0; jj < jn; jj++) {
      const float dsj = __shfl_sync(0xffffffffu, ds, jj);
      const float* kr = Ks + jj * Dp;
#pragma unroll
      for (int t = 0; t < MAX_DT; t++)
        if (lane + 32 * t < D) acc[t] += dsj * kr[lane + 32 * t];
    }
  }
  if (!rowValid) return;
#pragma unroll
  for (int t = 0; t < MAX_DT; t++)
    if (lane + 32 * t < D) st(dq, qRow + lane + 32 * t, acc[t] * scale);
}

// One warp per (key tile, query head). shared: Ks, Vs, dKs, dVs [KT][D+1]; qs, dos [D].
// dk, dv: float32 [B,Tk,Hkv,D], zeroed by the host, added to atomically.
template <typename T>
__device__ void attn_bwd_dkdv(const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta,
                              float* dk, float* dv, const int* segs, const int* tile, int Tq, int Tk, int Hq, int Hkv, int D,
                              float scale, int causal) {
  extern __shared__ float sm[];
  const int Dp = D + 1, lane = threadIdx.x;
  float* Ks = sm;
  float* Vs = Ks + KT * Dp;
  float* dKs = Vs + KT * Dp;
  float* dVs = dKs + KT * Dp;
  float* qs = dVs + KT * Dp;
  float* dos = qs + D;
  const Seg sg = seg_of(segs, tile[0]);
  const int j0 = tile[1], h = blockIdx.y, hk = h / (Hq / Hkv), off = sg.kLen - sg.qLen;
  const i64 kRow0 = (i64)sg.b * Tk + sg.start;
  load_kv_tile(k, v, Ks, Vs, kRow0, j0, sg.kLen, Hkv, hk, D);
  for (int e = lane; e < KT * Dp; e += 32) {
    dKs[e] = 0.f;
    dVs[e] = 0.f;
  }
  __syncwarp();
  const int j = j0 + lane;
  const bool keyValid = j < sg.kLen;
  float* dkr = dKs + lane * Dp;
  float* dvr = dVs + lane * Dp;
  for (int i = causal ? max(0, j0 - off) : 0; i < sg.qLen; i++) {
    const i64 qRow = (((i64)sg.b * Tq + sg.start + i) * Hq + h) * D;
    const i64 stat = ((i64)sg.b * Hq + h) * Tq + sg.start + i;
    for (int d = lane; d < D; d += 32) {
      qs[d] = ld(q, qRow + d);
      dos[d] = ld(dout, qRow + d);
    }
    const float L = lse[stat], dl = delta[stat];
    __syncwarp();
    if (keyValid && (!causal || j <= i + off) && L != -INFINITY) {
      const float p = expf(scale * dot_row(qs, Ks + lane * Dp, D) - L);
      const float ds = p * (dot_row(dos, Vs + lane * Dp, D) - dl);
      for (int d = 0; d < D; d++) {
        dvr[d] += p * dos[d];
        dkr[d] += scale * ds * qs[d];
      }
    }
    __syncwarp();  // qs, dos are rewritten next row
  }
  for (int e = lane; e < KT * D; e += 32) {
    const int jj = e / D, d = e % D;
    if (j0 + jj >= sg.kLen) break;
    const i64 g = ((kRow0 + j0 + jj) * Hkv + hk) * D + d;
    atomicAdd(dk + g, dKs[jj * Dp + d]);
    atomicAdd(dv + g, dVs[jj * Dp + d]);
  }
}

// The segments and tile lists of one call, built on the device from cuSeqlens already there, so a
// call uploads nothing and a CUDA graph can replay it with other boundaries.
// cu: int32 [nCu] boundaries over the flattened B*Tq token axis (Tq == Tk); repeated values are
// zero-length samples, which lets a buffer of fixed capacity pad any step's list. nCu == 0: whole
// rows (Tq, Tk may differ), of kvLen[0] keys when kvLen is given (a KV cache's filled length, read
// here so a captured decoding step replays at any length; Tk is then the cache's capacity and the
// row stride of k and v). meta (int32, written here):
//   segs [maxSegs][4] | qTiles [maxQ][2] | kTiles [maxK][2] | first [maxSegs + 1][2]
// where `first` (scratch) holds each segment's first query and key tile. Tile entries past the real
// ones get segment -1 (idle_tile). kStep == 0: no key tiles (the forward).
// One block: thread 0 cuts the segments, serially over samples and row ends (at most a few
// thousand), then all threads write the segments' tiles and the idle entries.
extern "C" __global__ void attn_tiles(const int* cu, int nCu, int B, int Tq, int Tk, int* meta, int maxSegs, int qStep,
                                      int maxQ, int kStep, int maxK, const int* kvLen) {
  int* segs = meta;
  int* qTiles = segs + 4 * maxSegs;
  int* kTiles = qTiles + 2 * maxQ;
  int* first = kTiles + 2 * maxK;
  __shared__ int nSegs;
  if (threadIdx.x == 0) {
    int g = 0, nq = 0, nk = 0;
    auto add = [&](int b, int start, int qLen, int kLen) {
      segs[4 * g] = b, segs[4 * g + 1] = start, segs[4 * g + 2] = qLen, segs[4 * g + 3] = kLen;
      first[2 * g] = nq, first[2 * g + 1] = nk;
      nq += (qLen + qStep - 1) / qStep;
      if (kStep > 0) nk += (kLen + kStep - 1) / kStep;
      g++;
    };
    if (nCu == 0) {
      const int kLen = kvLen ? min(max(kvLen[0], 0), Tk) : Tk;  // keys filled of a KV cache of Tk rows
      for (int b = 0; b < B; b++) add(b, 0, Tq, kLen);
    } else {
      for (int i = 0; i + 1 < nCu; i++) {
        for (int s = cu[i], e = cu[i + 1]; s < e;) {  // a sample, cut at row ends
          const int b = s / Tq, end = min(e, (b + 1) * Tq);
          add(b, s - b * Tq, end - s, end - s);
          s = end;
        }
      }
    }
    first[2 * g] = nq, first[2 * g + 1] = nk;
    nSegs = g;
  }
  __syncthreads();  // also makes thread 0's global writes visible to the block
  const int n = nSegs;
  for (int g = threadIdx.x; g < n; g += blockDim.x) {
    for (int i = 0, t = first[2 * g]; i < segs[4 * g + 2]; i += qStep, t++) qTiles[2 * t] = g, qTiles[2 * t + 1] = i;
    if (kStep > 0) {
      for (int i = 0, t = first[2 * g + 1]; i < segs[4 * g + 3]; i += kStep, t++) kTiles[2 * t] = g, kTiles[2 * t + 1] = i;
    }
  }
  for (int t = first[2 * n] + threadIdx.x; t < maxQ; t += blockDim.x) qTiles[2 * t] = -1;
  for (int t = first[2 * n + 1] + threadIdx.x; t < maxK; t += blockDim.x) kTiles[2 * t] = -1;
}

// ---- decoding: one query row per sequence (Tq == 1), keys split over blocks ----
// The training kernels give a decoded token one block per query head walking every key in turn:
// at a few thousand cached keys that is a long chain of tile loads on a few SMs. Here the keys are
// cut into chunks of KT, one block per (chunk, kv head, row) over a grid sized by the capacity Tk
// (the same every step, as a CUDA graph needs; chunks past the filled length kvLen leave at once),
// and attn_decode_combine merges the chunks' partial softmax sums. With one query row, causal
// masks see every filled key, so they need no mask.
//   partial: the group of query heads that reads kv head hk (GQA) in one block: K and V of the
//   chunk in shared memory (float), scores lane = key, then per head m = max, l = sum exp(s - m),
//   acc[d] = sum_j exp(s_j - m) v_j[d], into part [B, Hq, S, D + 2] (acc, m, l); an empty chunk
//   writes m = -inf, l = 0 only.
// shared: Qs [group][D] | Ks, Vs [KT][D+1] | Ps [group][KT]
template <typename T>
__device__ void attn_decode_partial(const T* q, const T* k, const T* v, float* part, const int* kvLen, int Tk, int Hq, int Hkv,
                                    int D, float scale) {
  extern __shared__ float sm[];
  const int s = blockIdx.x, hk = blockIdx.y, b = blockIdx.z, S = gridDim.x, group = Hq / Hkv, Dp = D + 1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int kLen = kvLen ? min(max(kvLen[0], 0), Tk) : Tk, j0 = s * KT;
  float* Qs = sm;
  float* Ks = Qs + group * D;
  float* Vs = Ks + KT * Dp;
  float* Ps = Vs + KT * Dp;
  const i64 row = (i64)(b * Hq + hk * group) * S + s;  // part row of the group's first head; heads are S rows apart
  if (j0 >= kLen) {
    for (int h = threadIdx.x; h < group; h += blockDim.x) {
      part[(row + (i64)h * S) * (D + 2) + D] = -INFINITY;
      part[(row + (i64)h * S) * (D + 2) + D + 1] = 0.f;
    }
    return;
  }
  for (int e = threadIdx.x; e < group * D; e += blockDim.x) Qs[e] = ld(q, ((i64)b * Hq + hk * group) * D + e);
  load_kv_tile(k, v, Ks, Vs, (i64)b * Tk, j0, kLen, Hkv, hk, D);
  __syncthreads();
  for (int e = threadIdx.x; e < group * KT; e += blockDim.x) {
    const int h = e / KT, j = e % KT;
    Ps[e] = j0 + j < kLen ? scale * dot_row(Qs + h * D, Ks + j * Dp, D) : -INFINITY;
  }
  __syncthreads();
  for (int h = warp; h < group; h += nw) {  // lane = key: the chunk's softmax sums per head
    const float x = Ps[h * KT + lane], m = warp_max(x), p = x == -INFINITY ? 0.f : expf(x - m);
    Ps[h * KT + lane] = p;
    const float l = warp_sum(p);
    if (lane == 0) {
      part[(row + (i64)h * S) * (D + 2) + D] = m;
      part[(row + (i64)h * S) * (D + 2) + D + 1] = l;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < group * D; e += blockDim.x) {
    const int h = e / D, d = e % D;
    float acc = 0.f;
    for (int j = 0; j < KT; j++) acc += Ps[h * KT + j] * Vs[j * Dp + d];
    part[(row + (i64)h * S) * (D + 2) + d] = acc;
  }
}

// out [B, Hq, D] (Tq == 1), lse [B, Hq] from the S chunks' partial sums; no filled key: out 0,
// lse -inf. Grid B * Hq, threads over D.
template <typename T>
__device__ void attn_decode_combine(const float* part, T* out, float* lse, int S, int D) {
  const float* p = part + (i64)blockIdx.x * S * (D + 2);
  float M = -INFINITY;
  for (int s = 0; s < S; s++) M = fmaxf(M, p[(i64)s * (D + 2) + D]);
  float L = 0.f;
  for (int s = 0; s < S; s++) {
    const float m = p[(i64)s * (D + 2) + D];
    if (m != -INFINITY) L += expf(m - M) * p[(i64)s * (D + 2) + D + 1];
  }
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    for (int s = 0; s < S; s++) {
      const float m = p[(i64)s * (D + 2) + D];
      if (m != -INFINITY) acc += expf(m - M) * p[(i64)s * (D + 2) + d];
    }
    st(out, (i64)blockIdx.x * D + d, L > 0.f ? acc / L : 0.f);
  }
  if (threadIdx.x == 0) lse[blockIdx.x] = L > 0.f ? M + logf(L) : -INFINITY;
}

#define ATTN(T, s)                                                                                                        \
  extern "C" __global__ void attn_fwd_##s(const T* q, const T* k, const T* v, T* out, float* lse, const int* segs,        \
                                          const int* tiles, int Tq, int Tk, int Hq, int Hkv, int D, float scale,          \
                                          int causal) {                                                                   \
    const int* tile = tiles + 2 * query_tile();                                                                         \
    if (idle_tile(tile)) return;                                                                                        \
    attn_fwd<T>(q, k, v, out, lse, segs, tile, Tq, Tk, Hq, Hkv, D, scale, causal);                                      \
  }                                                                                                                       \
  extern "C" __global__ void attn_bwd_delta_##s(const T* out, const T* dout, float* delta, i64 rows, int Tq, int Hq,      \
                                                int D) {                                                                  \
    attn_bwd_delta<T>(out, dout, delta, rows, Tq, Hq, D);                                                                 \
  }                                                                                                                       \
  extern "C" __global__ void attn_bwd_dq_##s(const T* q, const T* k, const T* v, const T* dout, const float* lse,         \
                                             const float* delta, T* dq, const int* segs, const int* tiles, int Tq,        \
                                             int Tk, int Hq, int Hkv, int D, float scale, int causal) {                   \
    const int* tile = tiles + 2 * query_tile();                                                                         \
    if (idle_tile(tile)) return;                                                                                        \
    attn_bwd_dq<T>(q, k, v, dout, lse, delta, dq, segs, tile, Tq, Tk, Hq, Hkv, D, scale, causal);                       \
  }                                                                                                                       \
  extern "C" __global__ void attn_bwd_dkdv_##s(const T* q, const T* k, const T* v, const T* dout, const float* lse,       \
                                               const float* delta, float* dk, float* dv, const int* segs,                 \
                                               const int* tiles, int Tq, int Tk, int Hq, int Hkv, int D, float scale,     \
                                               int causal) {                                                              \
    const int* tile = tiles + 2 * key_tile();                                                                           \
    if (idle_tile(tile)) return;                                                                                        \
    attn_bwd_dkdv<T>(q, k, v, dout, lse, delta, dk, dv, segs, tile, Tq, Tk, Hq, Hkv, D, scale, causal);                 \
  }                                                                                                                       \
  extern "C" __global__ void attn_decode_partial_##s(const T* q, const T* k, const T* v, float* part, const int* kvLen,   \
                                                     int Tk, int Hq, int Hkv, int D, float scale) {                       \
    attn_decode_partial<T>(q, k, v, part, kvLen, Tk, Hq, Hkv, D, scale);                                                  \
  }                                                                                                                       \
  extern "C" __global__ void attn_decode_combine_##s(const float* part, T* out, float* lse, int S, int D) {               \
    attn_decode_combine<T>(part, out, lse, S, D);                                                                         \
  }
FOR_FLOATS(ATTN)
