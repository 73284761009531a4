// The optimizer and token-choosing kernels on regimes optim.test.ts and sampling.test.ts do not
// pin, CUDA against the CPU twins:
// - AdamW over many tensors: sizes 1, 7, 16383 (one short of a chunk), 16385, 32769, empty tensors
//   among them (no chunks: the chunk numbering skips them), every state on a view at an odd element
//   offset, and the cached cast copy (copy.to) at odd sizes and offsets, with and without a
//   gradient multiplier; the global norm over the same spans;
// - argmax where rows wrap the block's 1024 threads (1023, 1024, 1025, 2049, 100003 logits), ties
//   between threads and within one thread's share, a maximum at the first or last index, rows of
//   -inf, +0 against -0; top-k over rows of 2 and 3, k = 1 and n - 1, fewer finite logits than k,
//   ties with the k-th that do and do not fit the candidate cap (1024), on every float dtype.

import assert from 'node:assert/strict';
import test from 'node:test';
import type { AdamWHyper } from '../../src/backends/backend.ts';
import { adamwStateWords } from '../../src/backends/backend.ts';
import { TensorLogitsRow } from '../../src/generate/logits-row.ts';
import type { FloatDType } from '../../src/tensor/dtype.ts';
import { tensor } from '../../src/tensor/index.ts';
import { compareWithCpu, ints, SEED, SKIP, tolFor, uniform, type Buf } from './helpers.ts';

const FLOATS: FloatDType[] = ['float32', 'bfloat16', 'float16'];

test('adamwStep over odd sizes, empty tensors, views and cast copies; the norm over the same spans', { skip: SKIP }, () => {
  const sizes = [1, 0, 7, 16_383, 0, 16_385, 32_769];
  const combos = [
    { param: 'float32', grad: 'bfloat16', expAvg: 'float32', expAvgSq: 'float32' },
    { param: 'bfloat16', grad: 'bfloat16', expAvg: 'float32', expAvgSq: 'bfloat16' },
    { param: 'float16', grad: 'float32', expAvg: 'float16', expAvgSq: 'float32' },
  ] as const;
  const tensors = sizes.map((n, i) => ({ n, dtypes: combos[i % combos.length]!, step: 1 + i, offset: 1 + (i % 5), copy: i % 2 === 0 ? (FLOATS[i % 3]!) : null }));
  const bufs: Record<string, Buf> = { scale: { dtype: 'float32', data: Float32Array.of(1.7) } };
  tensors.forEach(({ dtypes: d, n, offset, copy }, i) => {
    bufs[`p${i}`] = { dtype: d.param, data: uniform(d.param, n), offset };
    bufs[`g${i}`] = { dtype: d.grad, data: uniform(d.grad, n, -0.1, 0.1), offset: offset + 1 };
    bufs[`m${i}`] = { dtype: d.expAvg, data: uniform(d.expAvg, n, -0.01, 0.01), offset };
    bufs[`v${i}`] = { dtype: d.expAvgSq, data: uniform(d.expAvgSq, n, 0, 1e-4), offset: 3 };
    if (copy) bufs[`c${i}`] = { dtype: copy, data: uniform(copy, n), offset: offset + 2 };
  });
  const outputs = tensors.flatMap((t, i) => [`p${i}`, `m${i}`, `v${i}`, ...(t.copy ? [`c${i}`] : [])]);
  const STEP = Math.max(...tensors.map((t) => t.step));
  const h: AdamWHyper = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01 };
  bufs['state'] = { dtype: 'int32', data: adamwStateWords({ ...h, step: STEP }) };
  for (const scaled of [false, true]) {
    compareWithCpu(
      `adamwStep odd sizes${scaled ? ' gradScale 1.7' : ''}`,
      bufs,
      outputs,
      (name) => tolFor(bufs[name]!.dtype as FloatDType, true),
      (b, s) =>
        b.adamwStep(
          tensors.map((t, i) => ({
            param: s[`p${i}`]!, grad: s[`g${i}`]!, expAvg: s[`m${i}`]!, expAvgSq: s[`v${i}`]!, size: t.n, dtypes: t.dtypes, stepLag: STEP - t.step,
            copy: t.copy ? { to: s[`c${i}`]!, dtype: t.copy } : null,
          })),
          s['state']!,
          scaled ? s['scale']! : null,
        ),
    );
  }
  compareWithCpu(
    'gradNormClip over odd sizes, empty spans, views',
    { ...bufs, norm: { dtype: 'float32', size: 1 }, coef: { dtype: 'float32', size: 1 } },
    ['norm', 'coef'],
    { abs: 0, rel: 4e-6 },
    (b, s) => b.gradNormClip(tensors.map((t, i) => ({ x: s[`g${i}`]!, size: t.n, dtype: t.dtypes.grad })), 0.5, s['norm']!, s['coef']!),
  );
});

function compareRow(x: Float32Array, dtype: FloatDType, ks: readonly number[], what: string): void {
  const n = x.length;
  const on = (device: 'cpu' | 'cuda') => new TensorLogitsRow(tensor(x, [1, 1, n], { dtype, device }), true);
  const [cpu, cuda] = [on('cpu'), on('cuda')];
  try {
    const full = `${what}, ${dtype}, ${n} logits (seed ${SEED})`;
    assert.equal(cuda.argmax(), cpu.argmax(), `argmax, ${full}`);
    for (const k of ks) {
      if (!(k >= 1 && k < n)) continue;
      for (const t of [0.3, 1, 2.5]) assert.deepEqual(cuda.topK(k, t), cpu.topK(k, t), `top-${k} at temperature ${t}, ${full}`);
    }
  } finally {
    cpu.dispose();
    cuda.dispose();
  }
}

test('argmax and top-k: rows that wrap the block, ties across threads, edges, masked rows, the cap', { skip: SKIP }, () => {
  for (const dtype of FLOATS) {
    for (const n of [2, 3, 1023, 1024, 1025, 2049, 100_003]) {
      const base = () => Float32Array.from(uniform('float32', n, -4, 4) as Float32Array);
      // the maximum at the last index
      const last = base();
      last[n - 1] = 9;
      compareRow(last, dtype, [1, 2, n - 1], `max last`);
      // the maximum at index 0, everything else -inf
      const first = new Float32Array(n).fill(-Infinity);
      first[0] = -3;
      compareRow(first, dtype, [1, 2], 'max first, rest -inf');
      // every logit -inf: index 0, no candidates
      compareRow(new Float32Array(n).fill(-Infinity), dtype, [1], 'all -inf');
      // ties between threads (i and i + 1 apart by one thread; i and i + 1024 in one thread's share)
      const tie = base();
      const a = ints(1, n)[0]!;
      tie[a] = 9;
      tie[(a + 1) % n] = 9;
      if (n > 1024) tie[(a + 1024) % n] = 9;
      compareRow(tie, dtype, [1, 2, 3], `ties at ${a}, ${a + 1}, ${a + 1024}`);
      // +0 and -0 as the largest values
      const zeros = Float32Array.from(base(), (v) => -Math.abs(v) - 1);
      zeros[n - 1] = -0;
      zeros[n >> 1] = 0;
      compareRow(zeros, dtype, [1, 2], '+0 and -0 largest');
      // fewer finite logits than k: the rest -inf
      const few = new Float32Array(n).fill(-Infinity);
      for (let i = 0; i < Math.min(3, n - 1); i++) few[ints(1, n)[0]!] = i - 1;
      compareRow(few, dtype, [1, Math.min(5, n - 1), n - 1], 'few finite logits');
      // constant row: every token ties with the k-th (more than the cap of 1024 when n > 1024)
      compareRow(new Float32Array(n).fill(0.5), dtype, [1, n - 1], 'constant row');
      // exactly 1024 ties at the top: the cap is met, not exceeded
      if (n > 1024) {
        const capped = base();
        for (let i = 0; i < 1024; i++) capped[(i * 7) % n] = 20;
        compareRow(capped, dtype, [1, 1024, 1025], '1024 ties at the top');
      }
    }
  }
});
