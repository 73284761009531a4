// checkpoint: the same values and gradients (inputs and closure parameters, dropout included) as
// running the function plainly, while the function's activations are not kept until backward.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';

function block(w1: T.Tensor, w2: T.Tensor, stream: T.DropoutStream) {
  return (x: T.Tensor) => T.add(x, T.linear(T.dropout(T.silu(T.linear(x, w1)), 0.3, { stream }), w2));
}

test('checkpointed blocks give the plain run values and gradients, dropout masks replayed', () => {
  const grads = (useCheckpoint: boolean) =>
    T.tidy(() => {
      const init = new T.Rng(1);
      const x = T.randn([4, 8], { rng: init, requiresGrad: true });
      const w1 = T.randn([16, 8], { rng: init, requiresGrad: true });
      const w2 = T.randn([8, 16], { rng: init, requiresGrad: true });
      const frozen = T.randn([8, 8], { rng: init });
      const drop = new T.DropoutStream(new T.Rng(2));
      const f = block(w1, w2, drop);
      let h = T.linear(x, frozen);
      h = useCheckpoint ? T.checkpoint(f, [h], { streams: [drop] }) : f(h);
      h = useCheckpoint ? T.checkpoint(f, [h], { streams: [drop] }) : f(h);
      const loss = T.sum(T.mul(h, h));
      loss.backward();
      const after = drop.getState(); // the recomputation must not shift later calls
      return { loss: loss.item(), gx: x.grad!.toFloat32Array(), g1: w1.grad!.toFloat32Array(), g2: w2.grad!.toFloat32Array(), after };
    });
  const plain = grads(false);
  const ck = grads(true);
  assert.equal(ck.loss, plain.loss);
  assert.deepEqual(ck.gx, plain.gx);
  assert.deepEqual(ck.g1, plain.g1);
  assert.deepEqual(ck.g2, plain.g2);
  assert.deepEqual(ck.after, plain.after);
});

test('a checkpoint keeps only its inputs and output between forward and backward', () => {
  const w = T.keep(T.randn([256, 256], { requiresGrad: true }));
  const f = (x: T.Tensor) => T.silu(T.linear(T.silu(T.linear(T.silu(T.linear(x, w)), w)), w));
  const held = (useCheckpoint: boolean) =>
    T.tidy(() => {
      const x = T.randn([64, 256], { requiresGrad: true });
      const base = T.memoryStats().liveBytes;
      const y = useCheckpoint ? T.checkpoint(f, [x]) : f(x);
      const bytes = T.memoryStats().liveBytes - base;
      T.sum(y).backward();
      w.grad = null;
      return bytes;
    });
  const plain = held(false);
  const ck = held(true);
  const activation = 64 * 256 * 4;
  assert.equal(ck, activation, 'only the output of the checkpointed function stays');
  assert.ok(plain >= 5 * activation, `plain run keeps the inner activations (${plain} bytes)`);
  w.dispose();
});

test('a checkpoint whose inputs need no gradient still trains the parameters it closes over', () => {
  T.tidy(() => {
    const w = T.tensor([[2]], undefined, { requiresGrad: true });
    const x = T.tensor([[3]]);
    T.sum(T.checkpoint((h) => T.linear(h, w), [x])).backward();
    assert.deepEqual([...w.grad!.toFloat32Array()], [3]);
  });
});

test('toDevice to the same device is the tensor itself', () => {
  T.tidy(() => {
    const x = T.ones([2]);
    assert.equal(T.toDevice(x, 'cpu'), x);
  });
});
