// Warp-level tensor-core matrix multiply-accumulate, mma.sync.m16n8k16 with bfloat16 or float16
// inputs and float32 accumulators (sm_80 and newer), and the fragment helpers the kernels build
// their operands with. The register layouts are PTX's (ISA, "Matrix Fragments for mma.m16n8k16"):
// with g = lane / 4 and t = lane % 4,
//   A 16x16 (row-major), 4 registers of 2 halves: a0 = A[g][2t,2t+1], a1 = A[g+8][2t,2t+1],
//                                                 a2 = A[g][2t+8,2t+9], a3 = A[g+8][2t+8,2t+9]
//   B 16x8 (k x n),       2 registers:            b0 = B[2t,2t+1][g], b1 = B[2t+8,2t+9][g]
//   C/D 16x8 float32,     4 values:               c0,c1 = C[g][2t,2t+1], c2,c3 = C[g+8][2t,2t+1]
// The lower element of a pair sits in the low 16 bits. Two C tiles side by side (columns 0-7 and
// 8-15) hold exactly the values of one A fragment, which is how attention turns its scores into
// the left operand of the next product without leaving registers.
// Fragments come from shared memory by ldmatrix: each 8x8 quarter of a fragment is one 8-row
// matrix whose rows are 16 bytes of a tile row (lane 8i + r gives row r of matrix i), and lane l
// receives row l/4, elements 2(l%4) and 2(l%4)+1 of each: the A and B layouts above; with .trans
// the matrix is read transposed, which gives B straight from a tile stored k-major (P V). One
// instruction replaces two to four 32-bit loads (or, transposed, four 16-bit loads and packing).
// The kernel emulator (test/cuda/fake) defines XTUNER_EMU and computes the same product and loads
// from the lanes' fragments and addresses.
#pragma once
#include <type_traits>
#include "common.cuh"

typedef uint32_t u32;

// bits of a 16-bit float
__device__ __forceinline__ uint16_t bits16(bf16 h) { return *reinterpret_cast<const uint16_t*>(&h); }
__device__ __forceinline__ uint16_t bits16(f16 h) { return *reinterpret_cast<const uint16_t*>(&h); }

// Two floats rounded to T and packed as one 32-bit register (lo in the low half).
template <typename T>
__device__ __forceinline__ u32 pack2(float lo, float hi) {
  T l, h;
  st(&l, 0, lo);
  st(&h, 0, hi);
  return (u32)bits16(l) | ((u32)bits16(h) << 16);
}

#ifdef XTUNER_EMU
void emu_mma_16816(bool bf, float* d, const u32* a, const u32* b);
void emu_ldmatrix(u32* r, int count, bool trans, const void* row);
#endif

// N (1, 2 or 4) 8x8 matrices of 16-bit values from shared memory, `row` this lane's row address
// (lane 8i + r: row r of matrix i; 16-byte aligned), transposed when TRANS.
template <int N, bool TRANS>
__device__ __forceinline__ void ldmatrix(u32 (&r)[N], const void* row) {
#ifdef XTUNER_EMU
  emu_ldmatrix(r, N, TRANS, row);
#else
  const u32 a = (u32)__cvta_generic_to_shared(row);
  if constexpr (N == 4 && !TRANS) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  } else if constexpr (N == 4) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  } else if constexpr (N == 2 && !TRANS) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  } else if constexpr (N == 2) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  } else {
    static_assert(N == 2 || N == 4, "ldmatrix: 2 or 4 matrices");
  }
#endif
}

// d += A B for one 16x8 tile; T is bf16 or f16.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
#ifdef XTUNER_EMU
  emu_mma_16816(std::is_same<T, bf16>::value, d, a, b);
#else
  if constexpr (std::is_same<T, bf16>::value) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#endif
}

// The A fragment of rows [r0, r0+16), columns [c0, c0+16) of a row-major tile with row stride ld
// (ld and c0 multiples of 8): matrices a0..a3 = rows +0/+8 (bit 3 of the lane), columns +0/+8 (bit 4).
template <typename T>
__device__ __forceinline__ void frag_a(u32 (&a)[4], const T* tile, int ld, int r0, int c0) {
  const int lane = threadIdx.x & 31;
  ldmatrix<4, false>(a, tile + (r0 + (lane & 7) + (lane & 8)) * ld + c0 + ((lane >> 4) << 3));
}

// The B fragment (k x n = 16 x 8) whose column n is row n0+n of a row-major tile, k its columns
// [k0, k0+16): B = tile^T, as for Q K^T with K stored one key per row. b0, b1 = columns +0/+8.
template <typename T>
__device__ __forceinline__ void frag_b_rows(u32 (&b)[2], const T* tile, int ld, int n0, int k0) {
  const int lane = threadIdx.x & 31;
  ldmatrix<2, false>(b, tile + (n0 + (lane & 7)) * ld + k0 + (lane & 8));
}

// The B fragment (k x n = 16 x 8) taken straight from rows [k0, k0+16), columns [n0, n0+8) of a
// row-major tile, as for P V with V stored one key per row: b0, b1 = rows +0/+8, read transposed.
template <typename T>
__device__ __forceinline__ void frag_b_cols(u32 (&b)[2], const T* tile, int ld, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  ldmatrix<2, true>(b, tile + (k0 + (lane & 15)) * ld + n0);
}

// The A fragment made of two float32 C tiles (columns 0-7 in c[0], 8-15 in c[1]), rounded to T.
template <typename T>
__device__ __forceinline__ void frag_a_from_c(u32 (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack2<T>(c0[0], c0[1]);
  a[1] = pack2<T>(c0[2], c0[3]);
  a[2] = pack2<T>(c1[0], c1[1]);
  a[3] = pack2<T>(c1[2], c1[3]);
}
