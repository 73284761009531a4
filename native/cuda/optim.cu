// Optimizer kernels over many tensors at once (CPU twin: src/backends/cpu/optim.ts): the global
// gradient norm with its clip coefficient, and the AdamW step (PyTorch semantics). A table in
// device memory lists the tensors; each is cut into chunks of OPT_CHUNK elements, numbered across
// all tensors, and block b handles chunk b (the hardware hands blocks to SMs as they free up, so
// tensors of any sizes balance): one launch covers every tensor. Each tensor's dtypes are in its
// table entry (run-time dispatch, the same in every thread of a block). Nothing here is read back
// by the host: the norm and coefficient stay in device memory, where the AdamW kernel reads the
// coefficient.
#include "common.cuh"

// Elements of one tensor one block handles in a pass: 64 per thread at 256 threads.
#define OPT_CHUNK 16384

// Table entries, laid out as src/backends/cuda/optim.ts writes them (little-endian, 8-byte aligned).
struct NormEntry {  // 32 bytes
  const void* x;
  i64 n;
  i64 firstChunk;  // chunks of the tensors before this one
  int code;        // DtypeCode of x
  int pad;
};
struct AdamWEntry {  // 72 bytes
  void* p;
  const void* g;
  void* m;
  void* v;
  i64 n;
  i64 firstChunk;
  int stepLag;     // steps this tensor missed: its t = AdamWState.step - stepLag
  int pad;
  int codes;       // DtypeCodes: p | g << 8 | m << 16 | v << 24
  int copyCode;    // DtypeCode of copy
  void* copy;      // null, or n elements that receive the new p cast to copyCode (a model-dtype copy)
};

// The step state (Backend AdamWState), written by the host once per step: nothing in the launch
// arguments or the table changes from step to step.
struct AdamWState {
  double lr, step, beta1, beta2, eps, weightDecay;
};

// b^t by squaring, the same correctly rounded products as cpu/optim.ts powi (__dmul_rn: no FMA
// contraction with the subtraction that follows).
__device__ __forceinline__ double powi(double b, long long t) {
  double r = 1.0;
  for (double x = b; t > 0; t >>= 1, x = __dmul_rn(x, x))
    if (t & 1) r = __dmul_rn(r, x);
  return r;
}

// The entry that holds chunk c: the last one whose firstChunk <= c (entries are in chunk order and
// none is empty). Every thread of a block searches alike, so the loads are broadcasts.
template <typename E>
__device__ __forceinline__ const E& entry_of(const E* t, int count, i64 c) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (t[mid].firstChunk <= c) lo = mid;
    else hi = mid - 1;
  }
  return t[lo];
}

// partials[c] = sum of x^2 over chunk c (float32 [chunks]); a fixed order, so the same inputs give
// the same bits run after run (no atomics, nothing to zero first). Block c: chunk c.
extern "C" __global__ void sum_squares_multi(const NormEntry* t, int count, float* partials) {
  __shared__ float scratch[32];
  const NormEntry e = entry_of(t, count, blockIdx.x);
  const i64 start = (blockIdx.x - e.firstChunk) * OPT_CHUNK, end = min(start + OPT_CHUNK, e.n);
  float acc = 0.f;
  for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
    const float v = ld_code(e.x, e.code, i);
    acc += v * v;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// One block: norm[0] = sqrt(sum of partials), coef[0] = min(1, maxNorm / (norm + 1e-6)) as
// clip_grad_norm_ (written as a comparison so that a NaN norm gives 1, an infinite one 0).
// partials: float32 [chunks]; norm, coef: float32 [1].
extern "C" __global__ void grad_norm_clip(const float* partials, i64 chunks, float maxNorm, float* norm, float* coef) {
  __shared__ float scratch[32];
  float acc = 0.f;
  for (i64 i = threadIdx.x; i < chunks; i += blockDim.x) acc += partials[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) {
    const float nrm = sqrtf(acc);
    const float c = maxNorm / (nrm + 1e-6f);
    norm[0] = nrm;
    coef[0] = c < 1.f ? c : 1.f;
  }
}

// Per tensor, from the state in float64 as the CPU twin: decay = 1 - lr * wd, stepSize = lr / (1 -
// b1^t), bc2Sqrt = sqrt(1 - b2^t), each rounded to float32 once (the values the host used to pass).
// `scale` (float32 [1] or null) multiplies every gradient element.
// An entry with a copy also refreshes it (a cached cast of p, e.g. the LoRA adapters in the model's
// dtype): 2 more bytes per element here instead of a cast launch per tensor before the next forward.
// The arithmetic of each element is that of the one-tensor kernel this replaced (`adamw`), so a
// step with no scale gives its bits; with one, those of scaling the gradient in place first.
extern "C" __global__ void adamw_multi(const AdamWEntry* t, int count, const AdamWState* state, const float* scale) {
  const float s = scale ? scale[0] : 1.f;
  const AdamWState st = *state;
  const AdamWEntry e = entry_of(t, count, blockIdx.x);  // a copy: the stores below cannot alias it
  const long long step = (long long)st.step - e.stepLag;
  const float b1 = (float)st.beta1, b2 = (float)st.beta2, eps = (float)st.eps;
  const float decay = (float)(1.0 - __dmul_rn(st.lr, st.weightDecay));
  const float stepSize = (float)(st.lr / (1.0 - powi(st.beta1, step)));
  const float bc2Sqrt = (float)sqrt(1.0 - powi(st.beta2, step));
  const int pc = e.codes & 0xff, gc = (e.codes >> 8) & 0xff, mc = (e.codes >> 16) & 0xff, vc = (e.codes >> 24) & 0xff;
  const i64 start = (blockIdx.x - e.firstChunk) * OPT_CHUNK, end = min(start + OPT_CHUNK, e.n);
  for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
    const float gi = ld_code(e.g, gc, i) * s;
    const float mi = b1 * ld_code(e.m, mc, i) + (1.f - b1) * gi;
    const float vi = b2 * ld_code(e.v, vc, i) + (1.f - b2) * gi * gi;
    st_code(e.m, mc, i, mi);
    st_code(e.v, vc, i, vi);
    st_code(e.p, pc, i, ld_code(e.p, pc, i) * decay - stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps));
    // the stored value read back, so the copy is cast_any of the new p bit for bit at any p dtype
    if (e.copy) st_code(e.copy, e.copyCode, i, ld_code(e.p, pc, i));
  }
}
