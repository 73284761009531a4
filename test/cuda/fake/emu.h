// A CUDA kernel emulator for testing without a GPU (force-included when native/cuda/*.cu are
// compiled as host C++ by build-emu.sh). Each CUDA thread of a block is a fiber (ucontext); a block
// runs until every fiber has finished, switching at barriers: __syncthreads waits for the block,
// __syncwarp and the shuffles for the warp. Blocks run one after another, so `__shared__` can be a
// function-local static. A barrier that not every thread reaches is reported as a kernel bug.
// Not a performance model, and warp-level races cannot show here.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define XTUNER_EMU 1  // mma.cuh: tensor-core products through emu_mma_16816

struct uint4 {
  unsigned x, y, z, w;
};
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }

struct EmuDim {
  unsigned x, y, z;
};
extern EmuDim blockIdx, blockDim, gridDim;
EmuDim& emu_thread_idx();
#define threadIdx (emu_thread_idx())

void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);
float __shfl_xor_sync(unsigned mask, float v, int laneMask);
float __shfl_sync(unsigned mask, float v, int srcLane);
void* emu_dynamic_smem();
inline float atomicAdd(float* p, float v) {  // fibers never run at the same time
  float old = *p;
  *p = old + v;
  return old;
}
inline int atomicAdd(int* p, int v) {
  int old = *p;
  *p = old + v;
  return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  unsigned old = *p;
  *p = old + v;
  return old;
}
// reinterpretations of bits
inline unsigned __float_as_uint(float v) { unsigned u; std::memcpy(&u, &v, 4); return u; }
inline int __float_as_int(float v) { int u; std::memcpy(&u, &v, 4); return u; }
inline float __uint_as_float(unsigned u) { float v; std::memcpy(&v, &u, 4); return v; }
inline double __longlong_as_double(long long u) { double v; std::memcpy(&v, &u, 8); return v; }
// round-to-nearest float arithmetic, never contracted into a fused multiply-add (built without FMA)
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __double2float_rn(double a) { return (float)a; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
using std::max;
using std::min;

// Calls a kernel with its parameters from a cuLaunchKernel-style array of pointers to values.
#include <utility>
template <typename... A, std::size_t... I>
void emu_invoke_(void (*f)(A...), void** p, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
}
template <typename... A>
void emu_invoke(void (*f)(A...), void** p) {
  emu_invoke_(f, p, std::index_sequence_for<A...>{});
}
// The bytes of each parameter of a kernel, 0-terminated: what the fake driver copies out of a
// launch's parameter array when it records the launch into a graph.
template <typename... A>
const std::size_t* emu_param_sizes(void (*)(A...)) {
  static const std::size_t sizes[] = {sizeof(std::remove_cv_t<std::remove_reference_t<A>>)..., 0};
  return sizes;
}
