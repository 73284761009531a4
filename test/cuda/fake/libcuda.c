/* A fake CUDA driver for testing the CUDA backend's host side on machines without a GPU.
 * "Device" memory is host memory (malloc), copies and memsets are real, modules and functions are
 * names, launches check their configuration and are logged. Kernels do not run, unless this is
 * built with -DFAKE_EMULATE and linked with the kernel emulator (build-emu.sh), which runs them on
 * the CPU. A memory budget (FAKE_CUDA_MEM bytes, default 256 MiB) makes out-of-memory testable.
 * FAKE_CUDA_NULL=1 (without the emulator) makes device-side work free: memsets and device-to-device
 * copies do nothing (and the fake cuBLAS computes nothing), so "device" pages are never touched and
 * a step of a real model shape runs in little host memory, leaving only the host side to time.
 * Build: cc -shared -fPIC -o libcuda.so.1 libcuda.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef FAKE_EMULATE
struct EmuEntry {
  const char *name;
  void (*call)(void **);
};
extern const struct EmuEntry emu_table[];
void emu_launch(const char *name, void (*fn)(void **), unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                unsigned bz, unsigned smem, void **params);
#endif

#define MAX_FN 4096
static size_t budget, used;
static int null_device;
static char *fn_names[MAX_FN];
static int fn_smem[MAX_FN];
static int n_fn;
static char log_buf[1 << 20];
static size_t log_len;

int cuInit(unsigned flags) {
  const char *m = getenv("FAKE_CUDA_MEM");
  budget = m ? strtoull(m, 0, 10) : (256u << 20);
  const char *z = getenv("FAKE_CUDA_NULL");
  null_device = z && z[0] == '1';
  return flags == 0 ? 0 : 1;
}
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
int cuDeviceGetName(char *name, int len, int dev) { strncpy(name, "Fake GPU", len); return 0; }
int cuDeviceGetAttribute(int *v, int attr, int dev) {
  switch (attr) {
    case 16: *v = 4; return 0;        /* multiprocessors */
    case 75: *v = 9; return 0;        /* cc major */
    case 76: *v = 0; return 0;        /* cc minor */
    case 97: *v = 232448; return 0;   /* max shared per block, opt-in */
    default: return 1;
  }
}
int cuDeviceTotalMem_v2(size_t *b, int dev) { *b = budget; return 0; }
int cuDevicePrimaryCtxRetain(void **ctx, int dev) { *ctx = (void *)0x1; return 0; }
int cuCtxSetCurrent(void *ctx) { return ctx ? 0 : 201; }
int cuStreamCreate(void **s, unsigned flags) { *s = (void *)0x2; return 0; }
int cuStreamSynchronize(void *s) { return 0; }

/* allocations carry their size in front, for the budget */
int cuMemAlloc_v2(uint64_t *p, size_t bytes) {
  if (bytes == 0) return 1;
  if (used + bytes > budget) return 2;
  size_t *m = malloc(bytes + 16);
  if (!m) return 2;
  m[0] = bytes;
  used += bytes;
  *p = (uint64_t)(uintptr_t)((char *)m + 16);
  return 0;
}
int cuMemFree_v2(uint64_t p) {
  size_t *m = (size_t *)((char *)(uintptr_t)p - 16);
  used -= m[0];
  free(m);
  return 0;
}
int cuMemGetInfo_v2(size_t *f, size_t *t) { *f = budget - used; *t = budget; return 0; }
int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, void *s) { memcpy((void *)(uintptr_t)dst, src, n); return 0; }
int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t n, void *s) { memcpy(dst, (void *)(uintptr_t)src, n); return 0; }
int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void *s) {
  if (null_device) return 0;
  memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n); return 0; }
int cuMemsetD8Async(uint64_t p, unsigned char v, size_t n, void *s) {
  if (null_device) return 0;
  memset((void *)(uintptr_t)p, v, n); return 0; }
int cuMemsetD16Async(uint64_t p, unsigned short v, size_t n, void *s) {
  if (null_device) return 0;
  unsigned short *q = (void *)(uintptr_t)p;
  for (size_t i = 0; i < n; i++) q[i] = v;
  return 0;
}
int cuMemsetD32Async(uint64_t p, unsigned v, size_t n, void *s) {
  if (null_device) return 0;
  unsigned *q = (void *)(uintptr_t)p;
  for (size_t i = 0; i < n; i++) q[i] = v;
  return 0;
}

int cuModuleLoadData(void **m, const void *image) {
  static const unsigned char magic[4] = {0x50, 0xed, 0x55, 0xba}; /* fatbin header, little-endian 0xBA55ED50 */
  if (memcmp(image, magic, 4) != 0) return 200;                    /* CUDA_ERROR_INVALID_IMAGE */
  *m = (void *)0x3;
  return 0;
}
int cuModuleGetFunction(void **f, void *m, const char *name) {
  if (n_fn == MAX_FN) return 1;
  fn_names[n_fn] = strdup(name);
  fn_smem[n_fn] = 48 * 1024;
  *f = (void *)(uintptr_t)(++n_fn);
  return 0;
}
int cuFuncSetAttribute(void *f, int attr, int value) {
  if (attr != 8 || value > 232448) return 1;
  fn_smem[(uintptr_t)f - 1] = value;
  return 0;
}
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned smem,
                   void *s, void **params, void **extra) {
  uintptr_t i = (uintptr_t)f;
  if (i == 0 || i > (uintptr_t)n_fn) return 400;                                   /* invalid handle */
  if (!gx || !gy || !gz || !bx || !by || !bz) return 1;
  if (gy > 65535 || gz > 65535 || (size_t)bx * by * bz > 1024 || bx % 32 != 0) return 1;
  if ((int)smem > fn_smem[i - 1]) return 1;
  size_t n = strlen(fn_names[i - 1]);
  if (log_len + n + 1 < sizeof log_buf) {
    memcpy(log_buf + log_len, fn_names[i - 1], n);
    log_buf[log_len + n] = '\n';
    log_len += n + 1;
  }
#ifdef FAKE_EMULATE
  const struct EmuEntry *e = emu_table;
  while (e->name && strcmp(e->name, fn_names[i - 1]) != 0) e++;
  if (!e->name) return 500; /* CUDA_ERROR_NOT_FOUND */
  emu_launch(e->name, e->call, gx, gy, gz, bx, by, bz, smem, params);
#endif
  return 0;
}
int cuEventCreate(void **e, unsigned flags) { *e = (void *)0x4; return 0; }
int cuEventRecord(void *e, void *s) { return 0; }
int cuEventSynchronize(void *e) { return 0; }
int cuEventElapsedTime(float *ms, void *a, void *b) { *ms = 0.5f; return 0; }
int cuEventDestroy_v2(void *e) { return 0; }
int cuGetErrorName(int e, const char **s) {
  *s = e == 1 ? "CUDA_ERROR_INVALID_VALUE" : e == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : e == 200 ? "CUDA_ERROR_INVALID_IMAGE" : "CUDA_ERROR_UNKNOWN";
  return 0;
}

/* test hooks: the kernels launched since the last call, one name per line; bytes in use */
int fake_launch_log(char *out, int len) {
  int n = (int)(log_len < (size_t)len - 1 ? log_len : (size_t)len - 1);
  memcpy(out, log_buf, n);
  out[n] = 0;
  log_len = 0;
  return n;
}
size_t fake_bytes_used(void) { return used; }
