import test from 'node:test';
import assert from 'node:assert/strict';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/tensor/dtype.ts';

test('bfloat16 rounds to nearest even and keeps specials', () => {
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(bf16BitsToF32(f32ToBf16Bits(3.140625)), 3.140625);
  // 1 + 2^-8 is exactly half-way between two bf16 values: ties to the even one (1.0).
  assert.equal(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8)), 1);
  assert.equal(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8)), 1 + 2 ** -6);
  assert.equal(bf16BitsToF32(f32ToBf16Bits(Infinity)), Infinity);
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
});

test('float16 round trip, overflow and subnormals', () => {
  for (const x of [0, 1, -2.5, 65504, 2 ** -14, 2 ** -24, 3 * 2 ** -20]) {
    assert.equal(f16BitsToF32(f32ToF16Bits(x)), x);
  }
  assert.equal(f16BitsToF32(f32ToF16Bits(70000)), Infinity);
  assert.equal(f16BitsToF32(f32ToF16Bits(1 + 2 ** -11)), 1); // tie to even
  assert.equal(f16BitsToF32(f32ToF16Bits(1 + 3 * 2 ** -11)), 1 + 2 ** -9);
});
