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

// The tile entry of this block. Query tiles (forward, dQ) are taken last first: under a causal
// mask a segment's later query tiles see more keys, and a GPU starts blocks about in index order,
// so the longest blocks start first and the short ones fill the tail (longest processing time
// first). Key tiles (dK/dV), whose first tiles are the longest, go in order.
__device__ __forceinline__ int query_tile() { return gridDim.x - 1 - blockIdx.x; }
__device__ __forceinline__ int key_tile() { return blockIdx.x; }

// Whether a tile entry (segment, first row) is past the real tiles (the whole block returns
// before any barrier).
__device__ __forceinline__ bool idle_tile(const int* tile) { return tile[0] < 0; }
