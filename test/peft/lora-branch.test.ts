// The fused LoRA branch (src/peft/lora-branch.ts): its forward and every gradient (x, the base
// weight through y, A, B) against a float64 reference and finite differences, with a dropout mask
// redrawn from the call's seed; bf16 and f16 against the same op in float32 (float32 adapter
// gradients); what it keeps for the backward (no [rows, in] tensor); y consumed in place; a
// LoRALinear over a bf16 model taking this path with the dropout seed drawn as the dropout op does;
// the adapters' copies cast per call (QLoRA) giving the same numbers and keeping nothing.

import test from 'node:test';
import assert from 'node:assert/strict';
import { dropoutScale, dropoutThreshold, philox4x32 } from '../../src/backends/cpu/dropout.ts';
import { Linear } from '../../src/nn/index.ts';
import { loraBranch } from '../../src/peft/lora-branch.ts';
import { LoRALinear } from '../../src/peft/lora.ts';
import { NF4Linear } from '../../src/quant/nf4-linear.ts';
import { DropoutStream, Rng, linear, memoryStats, sum, tensor, tidy, type FloatDType } from '../../src/tensor/index.ts';
import { assertClose, gradCheck, randomValues } from '../tensor/gradcheck.ts';

/**
 * bf16/f16 branch vs the float32 one on the same inputs: each of the ~5 roundings in a chain (h,
 * Ac or Bc, z, the output or dz) is at most 2^-9 (bf16) relative; 2^-5 of the output's max leaves
 * room for their sum over short reductions (seen: 5e-3 bf16, 4e-4 f16) and still fails any wrong
 * scaling or transpose (O(1)).
 */
const HALF_VS_F32_TOL: Record<'bfloat16' | 'float16', number> = { bfloat16: 2 ** -5, float16: 2 ** -8 };

/** The dropout factors of the first call's mask (element i: 0 or 1/(1-p)) of a stream over `rng`. */
function maskOf(rng: Rng, n: number, p: number): Float64Array {
  const twin = Rng.fromState(rng.getState());
  const [k0, k1] = [twin.nextUint32(), twin.nextUint32()];
  const c = new Uint32Array(4);
  return Float64Array.from({ length: n }, (_, i) => {
    c.set([Math.floor(i / 4), 0, 0, 0]);
    philox4x32(c, k0, k1);
    return c[i % 4]! < dropoutThreshold(p) ? 0 : dropoutScale(p);
  });
}

const [ROWS, IN, OUT, R] = [6, 9, 7, 3];
const SCALING = 0.75;

for (const p of [0, 0.3]) {
  test(`loraBranch (p = ${p}): y + scaling * dropout(x) A^T B^T and its gradients against float64 and finite differences`, () => {
    const rng = new Rng(17);
    const mask = p > 0 ? maskOf(rng, ROWS * IN, p) : new Float64Array(ROWS * IN).fill(1);
    // x [ROWS, IN], W [OUT, IN] (the base, through y), A [R, IN], B [OUT, R]
    const ref = ([x, w, a, b]: Float64Array[]): Float64Array => {
      const out = new Float64Array(ROWS * OUT);
      for (let n = 0; n < ROWS; n++) {
        const z = Array.from({ length: R }, (_, k) => {
          let s = 0;
          for (let i = 0; i < IN; i++) s += x![n * IN + i]! * mask[n * IN + i]! * a![k * IN + i]!;
          return s;
        });
        for (let o = 0; o < OUT; o++) {
          let s = 0;
          for (let i = 0; i < IN; i++) s += x![n * IN + i]! * w![o * IN + i]!;
          for (let k = 0; k < R; k++) s += SCALING * z[k]! * b![o * R + k]!;
          out[n * OUT + o] = s;
        }
      }
      return out;
    };
    gradCheck(
      `loraBranch p=${p}`,
      [{ shape: [2, ROWS / 2, IN] }, { shape: [OUT, IN] }, { shape: [R, IN] }, { shape: [OUT, R] }],
      ([x, w, a, b]) => loraBranch(linear(x!, w!), x!, a!, b!, { scaling: SCALING, p, stream: new DropoutStream(rng) }),
      ref,
      p > 0 ? 3 : 4,
    );
  });
}

test('loraBranch in bf16 and f16 equals the float32 branch to half precision; adapter gradients come out float32', () => {
  for (const dtype of ['bfloat16', 'float16'] as const) {
    const src = new Rng(5);
    // inputs rounded to `dtype` first, so both runs see the same values
    const vals = [ROWS * IN, OUT * IN, R * IN, OUT * R, ROWS * OUT].map((n) => tensor(Float32Array.from(randomValues(src, n)), [n], { dtype }).toFloat32Array());
    const run = (dt: FloatDType) =>
      tidy(() => {
        const x = tensor(vals[0]!, [ROWS, IN], { dtype: dt, requiresGrad: true });
        const w = tensor(vals[1]!, [OUT, IN], { dtype: dt, requiresGrad: true });
        const a = tensor(vals[2]!, [R, IN], { requiresGrad: true });
        const b = tensor(vals[3]!, [OUT, R], { requiresGrad: true });
        const out = loraBranch(linear(x, w), x, a, b, { scaling: SCALING, p: 0.25, stream: new DropoutStream(new Rng(8)) });
        assert.equal(out.dtype, dt);
        out.backward(tensor(vals[4]!, [ROWS, OUT], { dtype: dt }));
        assert.equal(a.grad!.dtype, 'float32');
        assert.equal(b.grad!.dtype, 'float32');
        return [out, x.grad!, w.grad!, a.grad!, b.grad!].map((t) => t.toFloat32Array());
      });
    const want = run('float32');
    const got = run(dtype);
    ['out', 'dx', 'dW', 'dA', 'dB'].forEach((what, i) => assertClose(got[i]!, want[i]!, HALF_VS_F32_TOL[dtype], `${dtype} ${what}`));
  }
});

test('loraBranch keeps z, Ac and Bc for the backward, not dropout(x) or a float32 copy of x; y becomes the output', () => {
  tidy(() => {
    const dtype = 'bfloat16';
    const [rows, inF, outF, r] = [64, 96, 80, 4];
    const x = tensor(new Float32Array(rows * inF).map((_, i) => Math.sin(i)), [rows, inF], { dtype, requiresGrad: true });
    const w = tensor(new Float32Array(outF * inF).map((_, i) => Math.cos(i)), [outF, inF], { dtype });
    const a = tensor(new Float32Array(r * inF).fill(0.1), [r, inF], { requiresGrad: true });
    const b = tensor(new Float32Array(outF * r).fill(0.1), [outF, r], { requiresGrad: true });
    const y = linear(x, w);
    const stream = new DropoutStream(new Rng(1));
    stream.take('cpu'); // its seed buffer (int32 [2], kept for the stream's life) made before measuring
    const before = memoryStats().liveBytes;
    const out = loraBranch(y, x, a, b, { scaling: 2, p: 0.1, stream });
    // y's storage is the output's: only z [rows, r], Ac [r, in] and Bc [out, r] (bf16) are new
    assert.equal(memoryStats().liveBytes - before, 2 * (rows * r + r * inF + outF * r));
    assert.ok(y.isDisposed, 'y is consumed');
    // a y that something else still reads cannot be overwritten
    const shared = linear(x, w);
    const alias = shared.detach();
    assert.throws(() => loraBranch(shared, x, a, b, { scaling: 2, p: 0, stream: new DropoutStream(new Rng(1)) }), /base output is shared/);
    alias.dispose();
    out.dispose();
  });
});

test('LoRALinear over a bf16 base takes the fused branch: one dropout call per training forward, none in eval', () => {
  const stream = new DropoutStream(new Rng(3));
  const base = new Linear(tensor(new Float32Array(OUT * IN).map((_, i) => Math.sin(i)), [OUT, IN], { dtype: 'bfloat16' }));
  const layer = LoRALinear.fromBase(base, { r: R, alpha: 6, dropout: 0.5, rng: new Rng(3), dropoutStream: stream });
  layer.lora_B.weight.assign(new Float32Array(OUT * R).fill(0.5));
  const x = tensor(new Float32Array(ROWS * IN).map((_, i) => Math.cos(i)), [ROWS, IN], { dtype: 'bfloat16' });
  const branch = (p: number, s: DropoutStream): Float32Array =>
    tidy(() => loraBranch(linear(x, base.weight), x, layer.lora_A.weight, layer.lora_B.weight, { scaling: layer.scaling, p, stream: s }).toFloat32Array());
  layer.train();
  const twin = new DropoutStream(new Rng(0));
  twin.setState(stream.getState());
  assert.deepEqual(tidy(() => layer.forward(x).toFloat32Array()), branch(0.5, twin));
  assert.deepEqual(stream.getState(), twin.getState(), 'the call numbered as the dropout op numbers it');
  layer.eval();
  assert.deepEqual(tidy(() => layer.forward(x).toFloat32Array()), branch(0, new DropoutStream(new Rng(0))));
  assert.deepEqual(stream.getState(), twin.getState(), 'no call in eval');
});

test('loraBranch with cacheCasts false: the same numbers bit for bit, and no copy of A or B kept after the call', () => {
  const dtype = 'bfloat16';
  const [rows, inF, outF, r] = [32, 64, 48, 4];
  const x = tensor(new Float32Array(rows * inF).map((_, i) => Math.sin(i)), [rows, inF], { dtype, requiresGrad: true });
  const w = tensor(new Float32Array(outF * inF).map((_, i) => Math.cos(i)), [outF, inF], { dtype });
  const a = tensor(new Float32Array(r * inF).map((_, i) => Math.sin(3 * i)), [r, inF], { requiresGrad: true });
  const b = tensor(new Float32Array(outF * r).map((_, i) => Math.cos(5 * i)), [outF, r], { requiresGrad: true });
  const stream = new DropoutStream(new Rng(1));
  stream.take('cpu'); // its seed buffer, kept for the stream's life, made before measuring
  const run = (cacheCasts: boolean) => {
    const state = stream.getState();
    const before = memoryStats().liveBytes;
    const out = tidy(() => {
      const o = loraBranch(linear(x, w), x, a, b, { scaling: 2, p: 0.2, stream, cacheCasts });
      sum(o).backward();
      return o.toFloat32Array();
    });
    const grads = [x, a, b].map((t) => t.grad!.toFloat32Array());
    for (const t of [x, a, b]) t.grad = null;
    stream.setState(state);
    return { out, grads, kept: memoryStats().liveBytes - before };
  };
  const perCall = run(false);
  const cached = run(true);
  assert.deepEqual(perCall.out, cached.out);
  assert.deepEqual(perCall.grads, cached.grads);
  assert.equal(perCall.kept, 0, 'nothing outlives the call');
  assert.equal(cached.kept, 2 * (r * inF + outF * r), 'the cache keeps Ac and Bc (bf16)');
  for (const t of [x, w, a, b]) t.dispose();
});

test('LoRALinear over an NF4 base (QLoRA) casts its adapters per call; over a bf16 Linear it keeps the copies', () => {
  const [inF, outF] = [128, 64];
  const weight = () => tensor(new Float32Array(outF * inF).map((_, i) => Math.sin(i)), [outF, inF], { dtype: 'bfloat16' });
  const x = tensor(new Float32Array(ROWS * inF).map((_, i) => Math.cos(i)), [ROWS, inF], { dtype: 'bfloat16' });
  for (const [name, base, keeps] of [['NF4', NF4Linear.fromLinear(new Linear(weight())), false], ['bf16', new Linear(weight()), true]] as const) {
    const layer = LoRALinear.fromBase(base, { r: R, alpha: 6, dropout: 0, rng: new Rng(3), dropoutStream: new DropoutStream(new Rng(3)) });
    layer.train();
    const before = memoryStats().liveBytes;
    tidy(() => sum(layer.forward(x)).backward());
    for (const p of [layer.lora_A.weight, layer.lora_B.weight]) p.grad = null;
    assert.equal(memoryStats().liveBytes - before, keeps ? 2 * R * (inF + outF) : 0, name);
  }
  x.dispose();
});
