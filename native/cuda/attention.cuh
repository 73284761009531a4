// What both attention kernel files share: the segments the host cuts the token axis into. A
// segment (b, start, qLen, kLen) is a whole row or one cuSeqlens piece of it; `tiles` lists
// (segment, first row) pairs, one per block, so no block ever crosses a segment.
#pragma once
#include "common.cuh"

struct Seg {
  int b, start, qLen, kLen;
};

__device__ __forceinline__ Seg seg_of(const int* segs, int si) {
  return Seg{segs[4 * si], segs[4 * si + 1], segs[4 * si + 2], segs[4 * si + 3]};
}
