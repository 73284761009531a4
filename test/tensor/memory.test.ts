// Memory ownership: a training loop (forward, backward, in-place AdamW) inside tidy holds exactly
// the same bytes after step 1 and step N; scopes dispose what they should and keep what they
// return; the graph's saved tensors survive inner scopes until backward and are freed after it.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';

/** A one-layer Llama-shaped model built straight on the ops. */
function makeParams(rng: T.Rng) {
  const V = 32;
  const H = 16;
  const nH = 4;
  const nKv = 2;
  const D = H / nH;
  const F = 24;
  const p = (shape: number[], std = 0.2) => T.keep(T.randn(shape, { rng, std, requiresGrad: true }));
  const params = {
    embed: p([V, H]),
    norm1: T.keep(T.ones([H], { requiresGrad: true })),
    q: p([nH * D, H]),
    k: p([nKv * D, H]),
    v: p([nKv * D, H]),
    o: p([H, nH * D]),
    norm2: T.keep(T.ones([H], { requiresGrad: true })),
    gate: p([F, H]),
    up: p([F, H]),
    down: p([H, F]),
    head: p([V, H]),
  };
  return { params, V, H, nH, nKv, D };
}

function forwardLoss(m: ReturnType<typeof makeParams>, ids: Int32Array, labels: Int32Array, cu: Int32Array): T.Tensor {
  const { params: w, H, nH, nKv, D } = m;
  const Tn = ids.length;
  const x = T.embedding(w.embed, T.tensor(ids, [1, Tn]));
  const h = T.rmsNorm(x, w.norm1, 1e-6);
  const pos = Array.from({ length: Tn }, (_, t) => t - cu[[...cu].findLastIndex((c) => c <= t)]!);
  const ang = new Float32Array(Tn * D);
  pos.forEach((p, t) => {
    for (let i = 0; i < D; i++) ang[t * D + i] = p / 10000 ** ((2 * (i % (D / 2))) / D);
  });
  const cos = T.tensor(ang.map(Math.cos), [1, Tn, D]);
  const sin = T.tensor(ang.map(Math.sin), [1, Tn, D]);
  const q = T.rope(T.reshape(T.linear(h, w.q), [1, Tn, nH, D]), cos, sin);
  const k = T.rope(T.reshape(T.linear(h, w.k), [1, Tn, nKv, D]), cos, sin);
  const v = T.reshape(T.linear(h, w.v), [1, Tn, nKv, D]);
  const a = T.attention(q, k, v, { causal: true, cuSeqlens: cu });
  const x2 = T.add(x, T.linear(T.reshape(a, [1, Tn, H]), w.o));
  const h2 = T.rmsNorm(x2, w.norm2, 1e-6);
  const x3 = T.add(x2, T.linear(T.swiglu(T.linear(h2, w.gate), T.linear(h2, w.up)), w.down));
  const logits = T.linear(T.reshape(x3, [Tn, H]), w.head);
  return T.crossEntropy(logits, labels);
}

test('training steps inside tidy: live memory after step N equals step 1, and the loss falls', () => {
  const m = makeParams(new T.Rng(1));
  const ids = Int32Array.from({ length: 12 }, (_, i) => (i * 7) % m.V);
  const labels = Int32Array.from(ids, (v, i) => (i % 5 === 0 ? -100 : (v + 1) % m.V));
  const cu = new Int32Array([0, 5, 12]);
  const list = Object.values(m.params);
  const states = new Map<T.Tensor, [T.Tensor, T.Tensor]>();
  const after: { liveBytes: number; liveTensors: number }[] = [];
  const losses: number[] = [];
  const start = T.memoryStats().liveBytes; // the parameters
  for (let step = 1; step <= 6; step++) {
    const loss = T.tidy(() => {
      const l = forwardLoss(m, ids, labels, cu);
      l.backward();
      T.noGrad(() => {
        for (const p of list) {
          let st = states.get(p);
          if (!st) states.set(p, (st = [T.keep(T.zerosLike(p)), T.keep(T.zerosLike(p))]));
          T.adamwStep([{ param: p, grad: p.grad!, expAvg: st[0], expAvgSq: st[1], step }], { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
          p.grad = null;
        }
      });
      return l.item();
    });
    losses.push(loss);
    const s = T.memoryStats();
    after.push({ liveBytes: s.liveBytes, liveTensors: s.liveTensors });
  }
  for (let i = 1; i < after.length; i++) assert.deepEqual(after[i], after[0], `memory after step ${i + 1} vs step 1`);
  // what stays: the parameters and their two AdamW moments, nothing else
  const paramBytes = list.reduce((n, p) => n + p.size * 4, 0);
  assert.equal(after[0]!.liveBytes, start + 2 * paramBytes);
  assert.ok(losses[5]! < losses[0]!, `loss should fall: ${losses.join(', ')}`);
  for (const p of list) p.dispose();
  for (const [a, b] of states.values()) {
    a.dispose();
    b.dispose();
  }
});

test('tidy disposes what it does not return, and returned tensors survive', () => {
  const before = T.memoryStats();
  const kept = T.tidy(() => {
    const a = T.ones([100]);
    const b = T.add(a, a);
    return { b, n: 3 };
  });
  assert.equal(T.memoryStats().liveTensors, before.liveTensors + 1);
  assert.equal(T.memoryStats().liveBytes, before.liveBytes + 400);
  assert.deepEqual([...kept.b.toFloat32Array().slice(0, 2)], [2, 2]);
  kept.b.dispose();
  assert.deepEqual(T.memoryStats().liveBytes, before.liveBytes);
  assert.throws(() => kept.b.toFloat32Array(), /use of a disposed tensor/);
  kept.b.dispose(); // twice is fine
});

test('a graph without backward is freed with its tensors', () => {
  const w = T.keep(T.randn([64, 64], { requiresGrad: true }));
  const base = T.memoryStats();
  T.tidy(() => {
    T.sum(T.silu(T.linear(T.ones([8, 64]), w)));
  });
  assert.deepEqual(T.memoryStats().liveBytes, base.liveBytes);
  assert.deepEqual(T.memoryStats().liveTensors, base.liveTensors);
  w.dispose();
});

test('tensors an inner tidy disposes stay available to backward, then are freed', () => {
  const w = T.keep(T.randn([4, 4], { requiresGrad: true }));
  const base = T.memoryStats();
  T.tidy(() => {
    const y = T.tidy(() => T.sum(T.silu(T.linear(T.ones([2, 4]), w)))); // linear's output is disposed here
    y.backward();
  });
  assert.ok(w.grad);
  w.grad = null;
  assert.equal(T.memoryStats().liveBytes, base.liveBytes);
  assert.equal(T.memoryStats().liveTensors, base.liveTensors);
  w.dispose();
});

test('backward twice through one graph is an error; noGrad records nothing', () => {
  T.tidy(() => {
    const w = T.randn([3], { requiresGrad: true });
    const y = T.sum(T.mul(w, w));
    y.backward();
    assert.throws(() => y.backward(), /backward\(\) ran twice/);
    const z = T.noGrad(() => T.sum(T.mul(w, w)));
    assert.equal(z.requiresGrad, false);
    assert.throws(() => z.backward(), /does not require grad/);
  });
});

test('gradients accumulate across backward calls until reset', () => {
  T.tidy(() => {
    const w = T.tensor([1, 2], undefined, { requiresGrad: true });
    T.sum(T.scale(w, 3)).backward();
    T.sum(T.scale(w, 3)).backward();
    assert.deepEqual([...w.grad!.toFloat32Array()], [6, 6]);
    w.grad = null;
    T.sum(T.mul(w, w)).backward();
    assert.deepEqual([...w.grad!.toFloat32Array()], [2, 4]);
  });
});
