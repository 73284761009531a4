// Asynchronous copies from global to shared memory (cp.async, sm_80 and newer): a thread issues
// 16-byte copies, closes them into a group (commit), and later waits until at most N of its newest
// groups are still in flight; a __syncthreads after the wait makes every thread's copies visible
// to the block. Loads so issued overlap the work between the issue and the wait, and pass through
// no registers. The kernel emulator (test/cuda/fake) writes a copy's bytes only at its thread's
// wait, so a read that comes too early sees the old contents there too.
#pragma once
#include "common.cuh"

#ifdef XTUNER_EMU
void emu_cp_async16(void* dst, const void* src);
void emu_cp_async_commit();
void emu_cp_async_wait(int pending);
#endif

// 16 bytes from global `src` to shared `dst`, both 16-byte aligned (cp.async.cg: cached in L2 only).
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
#ifdef XTUNER_EMU
  emu_cp_async16(dst, src);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src));
#endif
}

// Closes the copies issued since the last commit into one group.
__device__ __forceinline__ void cp_async_commit() {
#ifdef XTUNER_EMU
  emu_cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef XTUNER_EMU
  emu_cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}
