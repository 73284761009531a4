// What both attention kernel files share: the segments the token axis is cut into (attn_tiles in
// attention.cu builds them on the device). A segment (b, start, qLen, kLen) is a whole row or one
// cuSeqlens piece of it; `tiles` lists (segment, first row) pairs, one per block, so no block ever
// crosses a segment. Grids are sized for the worst case (the same every step, as a CUDA graph
// needs); the entries past the real tiles hold segment -1 and their blocks exit at once.
#pragma once
#include "common.cuh"

struct Seg {
  int b, start, qLen, kLen;
};

__device__ __forceinline__ Seg seg_of(const int* segs, int si) {
  return Seg{segs[4 * si], segs[4 * si + 1], segs[4 * si + 2], segs[4 * si + 3]};
}

// Whether this block's tile entry is past the real tiles (the whole block returns before any barrier).
__device__ __forceinline__ bool idle_tile(const int* tiles) { return tiles[2 * blockIdx.x] < 0; }
