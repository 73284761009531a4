/* A fake cuBLAS for testing the CUDA backend's GEMM mapping without a GPU: with the fake driver's
 * host "device" memory, cublasGemmStridedBatchedEx computes a plain column-major GEMM in float
 * (float32, bfloat16 or float16 operands; float32 or the operands' dtype out).
 * With FAKE_CUDA_NULL=1 it checks the arguments and computes nothing (host-side timing at real shapes).
 * The GEMM goes through the fake driver's fake_enqueue (found in the libcuda that XTUNER_LIBCUDA
 * names), so a stream capture records it into the graph as a card records cuBLAS's kernels.
 * Build: cc -shared -fPIC -o libcublas.so.13 libcublas.c */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int cublasCreate_v2(void **h) { *h = (void *)0x5; return 0; }
int cublasSetStream_v2(void *h, void *s) { return 0; }
int cublasSetWorkspace_v2(void *h, uint64_t ws, size_t bytes) { return ws != 0 && bytes > 0 ? 0 : 7; }

static float ld(const void *p, int type, int64_t i) {
  if (type == 0) return ((const float *)p)[i];
  if (type == 2) return (float)((const _Float16 *)p)[i];
  uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16; /* bfloat16 */
  float f;
  memcpy(&f, &bits, 4);
  return f;
}
static void st(void *p, int type, int64_t i, float v) {
  if (type == 0) { ((float *)p)[i] = v; return; }
  if (type == 2) { ((_Float16 *)p)[i] = (_Float16)v; return; }
  uint32_t bits;
  memcpy(&bits, &v, 4);
  bits += 0x7fff + ((bits >> 16) & 1); /* round to nearest even */
  ((uint16_t *)p)[i] = (uint16_t)(bits >> 16);
}

struct Gemm {
  int ta, tb, m, n, k, at, bt, ct, lda, ldb, ldc, batch;
  float alpha, beta;
  uint64_t A, B, C;
  int64_t sa, sb, sc;
};

static void run_gemm(void *arg) {
  const struct Gemm *g = arg;
  int ta = g->ta, tb = g->tb, m = g->m, n = g->n, k = g->k, at = g->at, bt = g->bt, ct = g->ct;
  int lda = g->lda, ldb = g->ldb, ldc = g->ldc;
  int64_t sa = g->sa, sb = g->sb, sc = g->sc;
  uint64_t A = g->A, B = g->B, C = g->C;
  const float *alpha = &g->alpha, *beta = &g->beta;
  for (int q = 0; q < g->batch; q++) {
    const void *a = (const char *)(uintptr_t)A + q * sa * (at == 0 ? 4 : 2);
    const void *b = (const char *)(uintptr_t)B + q * sb * (bt == 0 ? 4 : 2);
    void *c = (char *)(uintptr_t)C + q * sc * (ct == 0 ? 4 : 2);
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        float s = 0;
        for (int p = 0; p < k; p++) {
          float x = ta ? ld(a, at, i * (int64_t)lda + p) : ld(a, at, p * (int64_t)lda + i);
          float y = tb ? ld(b, bt, p * (int64_t)ldb + j) : ld(b, bt, j * (int64_t)ldb + p);
          s += x * y;
        }
        float old = *beta == 0 ? 0 : ld(c, ct, j * (int64_t)ldc + i);
        st(c, ct, j * (int64_t)ldc + i, *alpha * s + *beta * old);
      }
  }
}

int cublasGemmStridedBatchedEx(void *h, int ta, int tb, int m, int n, int k, const float *alpha, uint64_t A, int at, int lda,
                               int64_t sa, uint64_t B, int bt, int ldb, int64_t sb, const float *beta, uint64_t C, int ct,
                               int ldc, int64_t sc, int batch, int compute, int algo) {
  if ((at != 0 && at != 2 && at != 14) || at != bt || (ct != 0 && ct != at) || compute != 68) return 15; /* NOT_SUPPORTED */
  const char *z = getenv("FAKE_CUDA_NULL");
  if (z && z[0] == '1') return 0;
  struct Gemm g = {ta, tb, m, n, k, at, bt, ct, lda, ldb, ldc, batch, *alpha, *beta, A, B, C, sa, sb, sc};
  static int (*enqueue)(void (*)(void *), const void *, size_t);
  if (!enqueue) {
    const char *lib = getenv("XTUNER_LIBCUDA");
    void *cuda = dlopen(lib ? lib : "libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (cuda) enqueue = (int (*)(void (*)(void *), const void *, size_t))dlsym(cuda, "fake_enqueue");
  }
  if (enqueue) return enqueue(run_gemm, &g, sizeof g);
  run_gemm(&g);
  return 0;
}
