// Host stand-in for CUDA's bfloat16 header, for the kernel emulator (emu.h): a 16-bit pattern and
// round-to-nearest-even conversions, as the device does them.
#pragma once
#include <cstdint>
#include <cstring>
struct __nv_bfloat16 {
  uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t b = (uint32_t)h.x << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((b >> 16) | 0x40)};
  b += 0x7fffu + ((b >> 16) & 1u);
  return {(uint16_t)(b >> 16)};
}
