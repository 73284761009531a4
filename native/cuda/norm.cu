// RMSNorm and LayerNorm over the last axis of x [rows, cols], forward and backward, one block per
// row. Weights may have their own dtype (kernels named <op>_<x dtype>_<w dtype>). The backward
// accumulates dw/db (float32 [cols]) in shared memory per block over a strided set of rows and adds
// it to global memory once per block; when 2 x cols floats do not fit (useSmem == 0) it adds each
// row's contribution straight to global memory.
// RMSNorm keeps a row in registers when it fits (cols a multiple of 8 and at most ROW_CHUNKS chunks
// of 8 per thread, pointers 16-byte aligned): the forward reads x once, the backward x and dy once,
// all through 16-byte accesses (common.cuh), and the backward's dw partials stay in registers
// (each thread owns the same columns in every row). Other rows take the scalar path. With
// `accumulate` the backward adds its dx to what dx holds (a gradient gathered in place: the
// residual stream's).
#include "common.cuh"

#define ROW_CHUNKS 2  // 256 threads: rows up to 4096; 1024 threads (cols >= 16384, layers.ts): 16384

// Whether rows of `cols` take the register path with this block (uniform over the grid).
__device__ __forceinline__ bool row_in_registers(int cols) {
  return cols % CHUNK == 0 && cols <= (int)blockDim.x * CHUNK * ROW_CHUNKS;
}
// Column of chunk k of this thread in a row on the register path (>= cols: none).
__device__ __forceinline__ int chunk_col(int k) { return (k * (int)blockDim.x + (int)threadIdx.x) * CHUNK; }

template <typename T, typename W>
__device__ void rms_norm_fwd(const T* x, const W* w, T* out, float* rstd, int cols, float eps) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * cols;
  if (row_in_registers(cols) && aligned16(x) && aligned16(w) && aligned16(out)) {
    float v[ROW_CHUNKS][CHUNK];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < ROW_CHUNKS; k++) {
      if (chunk_col(k) >= cols) continue;
      ld_chunk(x, base + chunk_col(k), v[k]);
#pragma unroll
      for (int j = 0; j < CHUNK; j++) ss += v[k][j] * v[k][j];
    }
    const float rs = 1.f / sqrtf(block_sum(ss, scratch) / cols + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
#pragma unroll
    for (int k = 0; k < ROW_CHUNKS; k++) {
      if (chunk_col(k) >= cols) continue;
      float wv[CHUNK];
      ld_chunk(w, chunk_col(k), wv);
#pragma unroll
      for (int j = 0; j < CHUNK; j++) v[k][j] = wv[j] * (v[k][j] * rs);
      st_chunk(out, base + chunk_col(k), v[k]);
    }
    return;
  }
  float ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = ld(x, base + c);
    ss += v * v;
  }
  const float rs = 1.f / sqrtf(block_sum(ss, scratch) / cols + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) st(out, base + c, ld(w, c) * (ld(x, base + c) * rs));
}

template <typename T, typename W>
__device__ void rms_norm_bwd(const T* x, const W* w, const float* rstd, const T* dy, T* dx, float* dw, int rows, int cols,
                             int useSmem, int accumulate) {
  __shared__ float scratch[32];
  extern __shared__ float acc[];  // [cols] partial dw
  if (row_in_registers(cols) && aligned16(x) && aligned16(w) && aligned16(dy) && aligned16(dx)) {
    float xs[ROW_CHUNKS][CHUNK], gs[ROW_CHUNKS][CHUNK], dws[ROW_CHUNKS][CHUNK] = {};
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
      const i64 base = (i64)r * cols;
      const float rs = rstd[r];
      float dot = 0.f;
#pragma unroll
      for (int k = 0; k < ROW_CHUNKS; k++) {
        if (chunk_col(k) >= cols) continue;
        float wv[CHUNK];
        ld_chunk(x, base + chunk_col(k), xs[k]);
        ld_chunk(dy, base + chunk_col(k), gs[k]);
        ld_chunk(w, chunk_col(k), wv);
#pragma unroll
        for (int j = 0; j < CHUNK; j++) dot += gs[k][j] * wv[j] * xs[k][j];
      }
      const float kk = block_sum(dot, scratch) * rs * rs / cols;
#pragma unroll
      for (int k = 0; k < ROW_CHUNKS; k++) {
        if (chunk_col(k) >= cols) continue;
        float wv[CHUNK], d[CHUNK] = {};
        ld_chunk(w, chunk_col(k), wv);  // again rather than a third row of registers: 16 KB at most, from L1
        if (accumulate) ld_chunk(dx, base + chunk_col(k), d);
#pragma unroll
        for (int j = 0; j < CHUNK; j++) {
          d[j] += rs * (gs[k][j] * wv[j] - xs[k][j] * kk);
          dws[k][j] += gs[k][j] * xs[k][j] * rs;
        }
        st_chunk(dx, base + chunk_col(k), d);
      }
    }
    if (dw != nullptr) {
#pragma unroll
      for (int k = 0; k < ROW_CHUNKS; k++) {
        if (chunk_col(k) >= cols) continue;
#pragma unroll
        for (int j = 0; j < CHUNK; j++) atomicAdd(dw + chunk_col(k) + j, dws[k][j]);
      }
    }
    return;
  }
  const bool smem = dw != nullptr && useSmem;
  if (smem) for (int c = threadIdx.x; c < cols; c += blockDim.x) acc[c] = 0.f;
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 base = (i64)r * cols;
    const float rs = rstd[r];
    float dot = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dot += ld(dy, base + c) * ld(w, c) * ld(x, base + c);
    const float k = block_sum(dot, scratch) * rs * rs / cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xv = ld(x, base + c), g = ld(dy, base + c);
      st(dx, base + c, (accumulate ? ld(dx, base + c) : 0.f) + rs * (g * ld(w, c) - xv * k));
      if (dw != nullptr) {
        if (smem) acc[c] += g * xv * rs;  // column c always belongs to this thread: no race
        else atomicAdd(dw + c, g * xv * rs);
      }
    }
  }
  if (smem) for (int c = threadIdx.x; c < cols; c += blockDim.x) atomicAdd(dw + c, acc[c]);
}

template <typename T, typename W>
__device__ void layer_norm_fwd(const T* x, const W* w, const W* b, T* out, float* mean, float* rstd, int cols, float eps) {
  __shared__ float scratch[32];
  const i64 base = (i64)blockIdx.x * cols;
  float s = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += ld(x, base + c);
  const float mu = block_sum(s, scratch) / cols;
  float v = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = ld(x, base + c) - mu;
    v += d * d;
  }
  const float rs = 1.f / sqrtf(block_sum(v, scratch) / cols + eps);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = mu;
    rstd[blockIdx.x] = rs;
  }
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    st(out, base + c, (ld(x, base + c) - mu) * rs * ld(w, c) + (b != nullptr ? ld(b, c) : 0.f));
  }
}

template <typename T, typename W>
__device__ void layer_norm_bwd(const T* x, const W* w, const float* mean, const float* rstd, const T* dy, T* dx, float* dw,
                               float* db, int rows, int cols, int useSmem) {
  __shared__ float scratch[32];
  extern __shared__ float acc[];  // [2, cols] partial dw, db
  const bool smem = useSmem != 0 && (dw != nullptr || db != nullptr);
  if (smem) for (int c = threadIdx.x; c < 2 * cols; c += blockDim.x) acc[c] = 0.f;
  __syncthreads();  // acc is zeroed at stride 2*cols but used at stride cols
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 base = (i64)r * cols;
    const float mu = mean[r], rs = rstd[r];
    float sg = 0.f, sgx = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float g = ld(dy, base + c) * ld(w, c);
      sg += g;
      sgx += g * (ld(x, base + c) - mu) * rs;
    }
    sg = block_sum(sg, scratch) / cols;
    sgx = block_sum(sgx, scratch) / cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xhat = (ld(x, base + c) - mu) * rs, g = ld(dy, base + c);
      st(dx, base + c, rs * (g * ld(w, c) - sg - xhat * sgx));
      if (smem) {
        acc[c] += g * xhat;
        acc[cols + c] += g;
      } else {
        if (dw != nullptr) atomicAdd(dw + c, g * xhat);
        if (db != nullptr) atomicAdd(db + c, g);
      }
    }
  }
  if (smem) {
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      if (dw != nullptr) atomicAdd(dw + c, acc[c]);
      if (db != nullptr) atomicAdd(db + c, acc[cols + c]);
    }
  }
}

#define NORM(T, Ts, W, Ws)                                                                                           \
  extern "C" __global__ void rms_norm_fwd_##Ts##_##Ws(const T* x, const W* w, T* out, float* rstd, int cols,          \
                                                      float eps) {                                                   \
    rms_norm_fwd<T, W>(x, w, out, rstd, cols, eps);                                                                  \
  }                                                                                                                  \
  extern "C" __global__ void rms_norm_bwd_##Ts##_##Ws(const T* x, const W* w, const float* rstd, const T* dy, T* dx,  \
                                                      float* dw, int rows, int cols, int useSmem, int accumulate) {  \
    rms_norm_bwd<T, W>(x, w, rstd, dy, dx, dw, rows, cols, useSmem, accumulate);                                     \
  }                                                                                                                  \
  extern "C" __global__ void layer_norm_fwd_##Ts##_##Ws(const T* x, const W* w, const W* b, T* out, float* mean,      \
                                                        float* rstd, int cols, float eps) {                          \
    layer_norm_fwd<T, W>(x, w, b, out, mean, rstd, cols, eps);                                                       \
  }                                                                                                                  \
  extern "C" __global__ void layer_norm_bwd_##Ts##_##Ws(const T* x, const W* w, const float* mean, const float* rstd, \
                                                        const T* dy, T* dx, float* dw, float* db, int rows, int cols, \
                                                        int useSmem) {                                               \
    layer_norm_bwd<T, W>(x, w, mean, rstd, dy, dx, dw, db, rows, cols, useSmem);                                     \
  }
FOR_FLOAT_PAIRS(NORM)
