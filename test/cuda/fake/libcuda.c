/* A fake CUDA driver for testing the CUDA backend's host side on machines without a GPU.
 * "Device" memory is host memory (malloc), copies and memsets are real, modules and functions are
 * names, launches check their configuration and are logged. Kernels do not run, unless this is
 * built with -DFAKE_EMULATE and linked with the kernel emulator (build-emu.sh), which runs them on
 * the CPU. A memory budget (FAKE_CUDA_MEM bytes, default 256 MiB) makes out-of-memory testable.
 * FAKE_CUDA_NULL=1 (without the emulator) makes device-side work free: memsets and device-to-device
 * copies do nothing (and the fake cuBLAS computes nothing), so "device" pages are never touched and
 * a step of a real model shape runs in little host memory, leaving only the host side to time;
 * reads back to the host give zeros.
 * Stream capture (cuStreamBeginCapture_v2 .. cuStreamEndCapture) records the launches, memsets and
 * device-to-device copies queued on the stream into a graph instead of doing them (launches still
 * go to the launch log, once, when captured); cuGraphLaunch replays them in order (kernels run only
 * with the emulator, which snapshots each launch's parameter values at capture; memsets and copies
 * are skipped on the null device). Host<->device copies and stream waits during capture fail with
 * CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidate the capture, as a card does for pageable
 * host memory: cuStreamEndCapture then returns CUDA_ERROR_STREAM_CAPTURE_INVALIDATED.
 * Build: cc -shared -fPIC -o libcuda.so.1 libcuda.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef FAKE_EMULATE
struct EmuEntry {
  const char *name;
  void (*call)(void **);
  const size_t *param_sizes; /* bytes of each parameter, 0-terminated (build-emu.sh) */
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

/* A captured graph: its nodes in stream order. */
enum { NODE_LAUNCH, NODE_MEMSET, NODE_COPY, NODE_HOST };
struct Node {
  int kind;
  uint64_t dst, src; /* memset: dst; copy: dst, src */
  size_t n;          /* memset: elements; copy: bytes */
  unsigned value, elem;
  void (*host_fn)(void *); /* NODE_HOST: work of the fake cuBLAS, on a copy of its arguments */
  void *host_data;
#ifdef FAKE_EMULATE
  const struct EmuEntry *entry;
  unsigned grid[3], block[3], smem;
  int nparams;
  char *args;        /* the parameter values at capture, each at a 16-byte aligned offset */
#endif
};
struct Graph {
  struct Node *nodes;
  int n, cap;
  int invalid; /* an operation that cannot be captured was attempted */
};
static struct Graph *capture; /* the graph being captured on the (one) stream, or null */
#define CUDA_ERROR_ILLEGAL_STATE 401
#define CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED 900
#define CUDA_ERROR_STREAM_CAPTURE_INVALIDATED 901

static struct Node *add_node(int kind) {
  if (capture->n == capture->cap) {
    capture->cap = capture->cap ? 2 * capture->cap : 64;
    capture->nodes = realloc(capture->nodes, capture->cap * sizeof *capture->nodes);
  }
  struct Node *nd = &capture->nodes[capture->n++];
  memset(nd, 0, sizeof *nd);
  nd->kind = kind;
  return nd;
}
/* An operation a capture cannot hold: it fails and the capture is invalidated. */
static int refuse_in_capture(void) {
  capture->invalid = 1;
  return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

static void do_memset(uint64_t p, unsigned v, size_t n, unsigned elem) {
  if (null_device) return;
  if (elem == 1) { memset((void *)(uintptr_t)p, (int)v, n); return; }
  if (elem == 2) { unsigned short *q = (void *)(uintptr_t)p; for (size_t i = 0; i < n; i++) q[i] = (unsigned short)v; return; }
  unsigned *q = (void *)(uintptr_t)p;
  for (size_t i = 0; i < n; i++) q[i] = v;
}
static int memset_or_record(uint64_t p, unsigned v, size_t n, unsigned elem) {
  if (capture) {
    struct Node *nd = add_node(NODE_MEMSET);
    nd->dst = p; nd->value = v; nd->n = n; nd->elem = elem;
    return 0;
  }
  do_memset(p, v, n, elem);
  return 0;
}

int cuInit(unsigned flags) {
  const char *m = getenv("FAKE_CUDA_MEM");
  budget = m ? strtoull(m, 0, 10) : (256u << 20);
  const char *z = getenv("FAKE_CUDA_NULL");
  null_device = z && z[0] == '1';
  return flags == 0 ? 0 : 1;
}
/* FAKE_CUDA_DRIVER_VERSION: the CUDA version the fake driver reports (default 13000: 13.0) */
int cuDriverGetVersion(int *v) {
  const char *d = getenv("FAKE_CUDA_DRIVER_VERSION");
  *v = d ? atoi(d) : 13000;
  return 0;
}
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
int cuDeviceGetName(char *name, int len, int dev) { strncpy(name, "Fake GPU", len); return 0; }
/* FAKE_CUDA_SMS: the multiprocessors it reports (default 4; 132 plays an H100/H200's launch geometry) */
int cuDeviceGetAttribute(int *v, int attr, int dev) {
  const char *sms = getenv("FAKE_CUDA_SMS");
  switch (attr) {
    case 16: *v = sms ? atoi(sms) : 4; return 0; /* multiprocessors */
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
int cuStreamSynchronize(void *s) { return capture ? refuse_in_capture() : 0; }

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
int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, void *s) {
  if (capture) return refuse_in_capture();
  memcpy((void *)(uintptr_t)dst, src, n); return 0; }
int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t n, void *s) {
  if (capture) return refuse_in_capture();
  if (null_device) memset(dst, 0, n); /* nothing was computed: reads give zeros (a valid token id, a finite loss) */
  else memcpy(dst, (void *)(uintptr_t)src, n);
  return 0; }
static void do_copy(uint64_t dst, uint64_t src, size_t n) {
  if (!null_device) memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
}
int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void *s) {
  if (capture) {
    struct Node *nd = add_node(NODE_COPY);
    nd->dst = dst; nd->src = src; nd->n = n;
    return 0;
  }
  do_copy(dst, src, n);
  return 0;
}
int cuMemsetD8Async(uint64_t p, unsigned char v, size_t n, void *s) { return memset_or_record(p, v, n, 1); }
int cuMemsetD16Async(uint64_t p, unsigned short v, size_t n, void *s) { return memset_or_record(p, v, n, 2); }
int cuMemsetD32Async(uint64_t p, unsigned v, size_t n, void *s) { return memset_or_record(p, v, n, 4); }

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
  if (capture) {
    struct Node *nd = add_node(NODE_LAUNCH);
    unsigned g[3] = {gx, gy, gz}, b[3] = {bx, by, bz};
    memcpy(nd->grid, g, sizeof g);
    memcpy(nd->block, b, sizeof b);
    nd->entry = e;
    nd->smem = smem;
    size_t bytes = 0;
    while (e->param_sizes[nd->nparams]) bytes += (e->param_sizes[nd->nparams++] + 15) & ~(size_t)15;
    nd->args = malloc(bytes ? bytes : 1);
    for (int k = 0, off = 0; k < nd->nparams; off += (e->param_sizes[k++] + 15) & ~(size_t)15)
      memcpy(nd->args + off, params[k], e->param_sizes[k]);
    return 0;
  }
  emu_launch(e->name, e->call, gx, gy, gz, bx, by, bz, smem, params);
#else
  if (capture) add_node(NODE_LAUNCH); /* kernels do not run here: nothing to replay but the count */
#endif
  return 0;
}

int cuStreamBeginCapture_v2(void *s, int mode) {
  if (capture) return CUDA_ERROR_ILLEGAL_STATE;
  if (mode < 0 || mode > 2) return 1;
  capture = calloc(1, sizeof *capture);
  return 0;
}
/* Test hook for the fake cuBLAS (a card captures cuBLAS's kernels): run fn(data) now, or record it
 * with a copy of `bytes` of data when the stream is being captured. */
int fake_enqueue(void (*fn)(void *), const void *data, size_t bytes) {
  if (!capture) { fn((void *)data); return 0; }
  struct Node *nd = add_node(NODE_HOST);
  nd->host_fn = fn;
  nd->n = bytes;
  nd->host_data = malloc(bytes);
  memcpy(nd->host_data, data, bytes);
  return 0;
}
static void free_graph(struct Graph *g) {
  for (int i = 0; i < g->n; i++) if (g->nodes[i].kind == NODE_HOST) free(g->nodes[i].host_data);
#ifdef FAKE_EMULATE
  for (int i = 0; i < g->n; i++) free(g->nodes[i].args);
#endif
  free(g->nodes);
  free(g);
}
int cuStreamEndCapture(void *s, void **graph) {
  if (!capture) return CUDA_ERROR_ILLEGAL_STATE;
  struct Graph *g = capture;
  capture = 0;
  if (g->invalid) {
    free_graph(g);
    *graph = 0;
    return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  }
  *graph = g;
  return 0;
}
/* The executable graph is a deep copy: the graph may be destroyed after instantiation. */
int cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
  struct Graph *g = graph, *x = calloc(1, sizeof *x);
  if (!g || flags) return 1;
  x->n = x->cap = g->n;
  x->nodes = malloc((g->n ? g->n : 1) * sizeof *x->nodes);
  memcpy(x->nodes, g->nodes, g->n * sizeof *x->nodes);
  for (int i = 0; i < g->n; i++) {
    if (x->nodes[i].kind != NODE_HOST) continue;
    x->nodes[i].host_data = malloc(g->nodes[i].n);
    memcpy(x->nodes[i].host_data, g->nodes[i].host_data, g->nodes[i].n);
  }
#ifdef FAKE_EMULATE
  for (int i = 0; i < g->n; i++) {
    struct Node *nd = &x->nodes[i];
    if (nd->kind != NODE_LAUNCH) continue;
    size_t bytes = 0;
    for (int k = 0; k < nd->nparams; k++) bytes += (nd->entry->param_sizes[k] + 15) & ~(size_t)15;
    nd->args = malloc(bytes ? bytes : 1);
    memcpy(nd->args, g->nodes[i].args, bytes);
  }
#endif
  *exec = x;
  return 0;
}
int cuGraphLaunch(void *exec, void *s) {
  struct Graph *x = exec;
  if (!x) return 400;
  if (capture) return refuse_in_capture(); /* a graph inside a capture: not needed, not faked */
  for (int i = 0; i < x->n; i++) {
    struct Node *nd = &x->nodes[i];
    if (nd->kind == NODE_MEMSET) do_memset(nd->dst, nd->value, nd->n, nd->elem);
    else if (nd->kind == NODE_COPY) do_copy(nd->dst, nd->src, nd->n);
    else if (nd->kind == NODE_HOST) nd->host_fn(nd->host_data);
#ifdef FAKE_EMULATE
    else {
      void *params[64];
      for (int k = 0, off = 0; k < nd->nparams; off += (nd->entry->param_sizes[k++] + 15) & ~(size_t)15) params[k] = nd->args + off;
      emu_launch(nd->entry->name, nd->entry->call, nd->grid[0], nd->grid[1], nd->grid[2], nd->block[0], nd->block[1],
                 nd->block[2], nd->smem, params);
    }
#endif
  }
  return 0;
}
int cuGraphExecDestroy(void *exec) { if (!exec) return 400; free_graph(exec); return 0; }
int cuGraphDestroy(void *graph) { if (!graph) return 400; free_graph(graph); return 0; }
int cuEventCreate(void **e, unsigned flags) { *e = (void *)0x4; return 0; }
int cuEventRecord(void *e, void *s) { return 0; }
int cuEventSynchronize(void *e) { return 0; }
int cuEventElapsedTime(float *ms, void *a, void *b) { *ms = 0.5f; return 0; }
int cuEventDestroy_v2(void *e) { return 0; }
int cuGetErrorName(int e, const char **s) {
  *s = e == 1 ? "CUDA_ERROR_INVALID_VALUE" : e == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : e == 200 ? "CUDA_ERROR_INVALID_IMAGE"
     : e == CUDA_ERROR_ILLEGAL_STATE ? "CUDA_ERROR_ILLEGAL_STATE"
     : e == CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED ? "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"
     : e == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ? "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED" : "CUDA_ERROR_UNKNOWN";
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
