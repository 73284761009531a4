// The emulator's scheduler (see emu.h): runs a launch block by block, each block's threads as
// fibers that switch at barriers, warp by warp (runBlock). Entry point: emu_launch, called by the fake driver.
// Fibers start on their own stack through a two-instruction stack switch (x86-64) and switch with
// _setjmp/_longjmp, which make no system calls (ucontext's functions do, and were 100x slower).
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <vector>
#include "emu.h"

EmuDim blockIdx, blockDim, gridDim;

namespace {
enum State { RUN, DONE, WAIT_BLOCK, WAIT_WARP };
struct Fiber {
  jmp_buf jb;
  bool started;
  EmuDim tid;
  int linear;
  State state;
};
constexpr size_t STACK = 256 * 1024;
std::vector<Fiber> fibers;
std::vector<char*> stacks;
std::vector<float> slots;
std::vector<char> smem;
// cp.async: per thread the copies issued since its last commit, and the committed groups not yet
// waited for; a copy reaches shared memory only when its thread waits for its group
struct AsyncCopy {
  char* dst;
  char bytes[16];
};
std::vector<std::vector<AsyncCopy>> openCopies;
bool asyncEarly;  // FAKE_CUDA_ASYNC=early, read once per launch
// FAKE_CUDA_ORDER=reverse, read once per launch: blocks, a block's warps and a warp's lanes run
// last first. The forward order shows a warp (lane) reading memory that a later one writes in the
// same phase; the reverse order shows the other direction, so the two together show a missing
// barrier whichever way the hazard runs. A card's order is neither.
bool reverseOrder;
std::vector<std::deque<std::vector<AsyncCopy>>> committedCopies;
jmp_buf sched;
Fiber* cur;
void (*entry)(void**);
void** params;
const char* kernelName;

[[noreturn]] void fiberMain() {
  entry(params);
  cur->state = DONE;
  _longjmp(sched, 1);
}

void wait(State s) {
  cur->state = s;
  if (!_setjmp(cur->jb)) _longjmp(sched, 1);
}

/** Run fiber `f` until it waits or finishes. */
void resume(Fiber& f, char* stackTop) {
  cur = &f;
  if (_setjmp(sched)) return;
  if (f.started) _longjmp(f.jb, 1);
  f.started = true;
  asm volatile("mov %0, %%rsp\n\tcall *%1" : : "r"(stackTop), "r"(fiberMain) : "memory");
  __builtin_unreachable();
}

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "emu: kernel %s block (%u,%u,%u): %s\n", kernelName, blockIdx.x, blockIdx.y, blockIdx.z, what);
  abort();
}

/**
 * One block: each warp in turn runs to its next __syncthreads (or its end), its lanes switching at
 * __syncwarp and shuffles, before the next warp starts; then the barrier lets all go on. So one warp
 * runs a whole phase between two barriers before another begins it: the widest skew between warps
 * a card allows, which shows a missing __syncthreads as wrong numbers (one warp overwrites shared
 * memory, or reads it, a whole phase before or after the others) rather than leaving it to timing.
 */
void runBlock(int n) {
  openCopies.resize(std::max<size_t>(openCopies.size(), n));
  committedCopies.resize(std::max<size_t>(committedCopies.size(), n));
  for (int t = 0; t < n; t++) {
    Fiber& f = fibers[t];
    f.linear = t;
    f.tid = {(unsigned)t % blockDim.x, ((unsigned)t / blockDim.x) % blockDim.y, (unsigned)t / (blockDim.x * blockDim.y)};
    f.state = RUN;
    f.started = false;
  }
  const int warps = (n + 31) / 32;
  for (;;) {
    for (int i = 0; i < warps; i++) {
      const int w = reverseOrder ? warps - 1 - i : i;
      const int first = w * 32, end = std::min(n, first + 32);
      for (;;) {  // this warp's lanes, to the next block barrier: each warp barrier releases them together
        for (int k = 0; k < end - first; k++) {
          const int t = reverseOrder ? end - 1 - k : first + k;
          if (fibers[t].state == RUN) resume(fibers[t], stacks[t] + STACK);
        }
        int live = 0, atWarp = 0;
        for (int t = first; t < end; t++) live += fibers[t].state != DONE, atWarp += fibers[t].state == WAIT_WARP;
        if (atWarp == 0) break;
        if (atWarp != live) die("warp barrier not reached by every lane of the warp");
        for (int t = first; t < end; t++) if (fibers[t].state == WAIT_WARP) fibers[t].state = RUN;
      }
    }
    int done = 0, atBlock = 0;
    for (int t = 0; t < n; t++) done += fibers[t].state == DONE, atBlock += fibers[t].state == WAIT_BLOCK;
    if (done == n) {
      for (int t = 0; t < n; t++) {
        if (!openCopies[t].empty() || !committedCopies[t].empty()) die("cp.async copies never waited for");
      }
      return;
    }
    if (atBlock + done != n) die("__syncthreads not reached by every thread (divergent barrier)");
    if (done > 0) die("__syncthreads after some threads exited");
    for (int t = 0; t < n; t++) fibers[t].state = RUN;
  }
}
}  // namespace

EmuDim& emu_thread_idx() { return cur->tid; }

// common.cuh's vector loads and stores: a 16-byte access at an address not a multiple of 16 faults on a GPU
void emu_check_aligned16(const void* p) {
  if ((uintptr_t)p & 15) die("16-byte vector access at an address that is not 16-byte aligned");
}
// cp.async.cg.shared.global, 16 bytes (native/cuda/async.cuh): the source is read now (global
// memory does not change during a launch), the destination written when the thread waits for the
// copy's group, so a read before the wait and the barrier after it sees the old contents. With
// FAKE_CUDA_ASYNC=early the bytes land at once instead, so a copy issued before the barrier that
// ends the reads of its buffer overwrites what other threads have still to read (a card may do
// either, or anything between).
void emu_cp_async16(void* dst, const void* src) {
  emu_check_aligned16(dst);
  emu_check_aligned16(src);
  char* d = static_cast<char*>(dst);
  if (d < smem.data() || d + 16 > smem.data() + smem.size()) die("cp.async destination outside shared memory");
  if (asyncEarly) {
    memcpy(d, src, 16);
    return;
  }
  AsyncCopy c{d, {}};
  memcpy(c.bytes, src, 16);
  openCopies[cur->linear].push_back(c);
}
void emu_cp_async_commit() {
  committedCopies[cur->linear].push_back(std::move(openCopies[cur->linear]));
  openCopies[cur->linear].clear();
}
void emu_cp_async_wait(int pending) {
  auto& groups = committedCopies[cur->linear];
  while ((int)groups.size() > pending) {
    for (const AsyncCopy& c : groups.front()) memcpy(c.dst, c.bytes, 16);
    groups.pop_front();
  }
}

void __syncthreads() { wait(WAIT_BLOCK); }
void __syncwarp(unsigned) { wait(WAIT_WARP); }
float __shfl_xor_sync(unsigned, float v, int laneMask) {
  const int lane = cur->linear & 31, base = cur->linear - lane;
  slots[cur->linear] = v;
  __syncwarp();
  const float r = slots[base + (lane ^ laneMask)];
  __syncwarp();
  return r;
}
float __shfl_sync(unsigned, float v, int src) {
  const int lane = cur->linear & 31, base = cur->linear - lane;
  slots[cur->linear] = v;
  __syncwarp();
  const float r = slots[base + (src & 31)];
  __syncwarp();
  return r;
}
void* emu_dynamic_smem() { return smem.data(); }

// mma.sync.m16n8k16 (see native/cuda/mma.cuh for the fragment layouts): every lane posts its A and B
// registers, then computes its own four accumulators from the whole warp's fragments, in float32
// (the products of two 16-bit floats are exact in float32; the order of the sum may differ from the
// tensor core's by rounding).
namespace {
struct MmaFrags {
  uint32_t a[4], b[2];
};
std::vector<MmaFrags> mmaSlots;
float half16(bool bf, uint32_t h) {
  if (bf) {
    const uint32_t bits = h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
  }
  _Float16 v;
  const uint16_t b16 = (uint16_t)h;
  memcpy(&v, &b16, 2);
  return (float)v;
}
float part(bool bf, uint32_t reg, int k) { return half16(bf, k % 2 ? reg >> 16 : reg & 0xffffu); }
}  // namespace

void emu_mma_16816(bool bf, float* d, const uint32_t* a, const uint32_t* b) {
  const int lane = cur->linear & 31, base = cur->linear - lane;
  mmaSlots[cur->linear] = {{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
  __syncwarp();
  const int g = lane >> 2, t = lane & 3;
  for (int e = 0; e < 4; e++) {
    const int r = g + 8 * (e >> 1), c = 2 * t + (e & 1);
    float acc = d[e];
    for (int k = 0; k < 16; k++) {
      const MmaFrags& fa = mmaSlots[base + (r % 8) * 4 + (k % 8) / 2];  // A[r][k]
      const MmaFrags& fb = mmaSlots[base + c * 4 + (k % 8) / 2];        // B[k][c]
      acc += part(bf, fa.a[(r >= 8) + 2 * (k >= 8)], k) * part(bf, fb.b[k >= 8], k);
    }
    d[e] = acc;
  }
  __syncwarp();  // the slots are rewritten by the next product
}

// ldmatrix.sync.m8n8.x{1,2,4}[.trans].shared.b16 (native/cuda/mma.cuh): lane 8i + r gives the
// address of row r of matrix i (16 bytes, 16-byte aligned, in shared memory); every lane posts its
// address, then takes one word per matrix i: row lane/4, elements 2(lane%4) and 2(lane%4)+1, or
// transposed, element lane/4 of rows 2(lane%4) and 2(lane%4)+1. Lanes past the used rows must
// still give valid addresses (checked too).
namespace {
std::vector<const uint16_t*> ldmSlots;
}
void emu_ldmatrix(uint32_t* r, int count, bool trans, const void* row) {
  const int lane = cur->linear & 31, base = cur->linear - lane;
  emu_check_aligned16(row);
  const char* c = static_cast<const char*>(row);
  if (c < smem.data() || c + 16 > smem.data() + smem.size()) die("ldmatrix row address outside shared memory");
  ldmSlots[cur->linear] = static_cast<const uint16_t*>(row);
  __syncwarp();
  const int g = lane >> 2, t = lane & 3;
  for (int i = 0; i < count; i++) {
    const uint16_t lo = trans ? ldmSlots[base + 8 * i + 2 * t][g] : ldmSlots[base + 8 * i + g][2 * t];
    const uint16_t hi = trans ? ldmSlots[base + 8 * i + 2 * t + 1][g] : ldmSlots[base + 8 * i + g][2 * t + 1];
    r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
  }
  __syncwarp();  // the slots are rewritten by the next load
}

extern "C" void emu_launch(const char* name, void (*fn)(void**), unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                           unsigned by, unsigned bz, unsigned smemBytes, void** p) {
  const int n = (int)(bx * by * bz);
  while ((int)stacks.size() < n) stacks.push_back((char*)malloc(STACK));
  fibers.resize(std::max<size_t>(fibers.size(), n));
  slots.assign(std::max<size_t>(slots.size(), n), 0.f);
  mmaSlots.resize(std::max<size_t>(mmaSlots.size(), n));
  ldmSlots.resize(std::max<size_t>(ldmSlots.size(), n));
  smem.assign(smemBytes + 16, (char)0x7f);  // garbage, as on the device
  kernelName = name;
  const char* asyncMode = getenv("FAKE_CUDA_ASYNC");
  asyncEarly = asyncMode && !strcmp(asyncMode, "early");
  const char* order = getenv("FAKE_CUDA_ORDER");
  reverseOrder = order && !strcmp(order, "reverse");
  entry = fn;
  params = p;
  gridDim = {gx, gy, gz};
  blockDim = {bx, by, bz};
  const unsigned long blocks = (unsigned long)gx * gy * gz;
  for (unsigned long i = 0; i < blocks; i++) {
    const unsigned long b = reverseOrder ? blocks - 1 - i : i;
    blockIdx = {(unsigned)(b % gx), (unsigned)(b / gx % gy), (unsigned)(b / gx / gy)};
    runBlock(n);
  }
}
