// Host stand-in for CUDA's float16 header, for the kernel emulator (emu.h), on the compiler's
// _Float16 (round to nearest even).
#pragma once
#include <cstdint>
#include <cstring>
struct __half {
  uint16_t x;
};
inline float __half2float(__half h) {
  _Float16 v;
  memcpy(&v, &h.x, 2);
  return (float)v;
}
inline __half __float2half_rn(float f) {
  _Float16 v = (_Float16)f;
  __half h;
  memcpy(&h.x, &v, 2);
  return h;
}
