// StepInputBuffer (src/models/step-inputs.ts): one upload gives views of ids, targets and cuSeqlens
// (and one more the loss scale, 1 / supervised targets);
// the buffer is written again only once every view of the last upload is gone, so a forward whose
// backward is still pending keeps its inputs.

import test from 'node:test';
import assert from 'node:assert/strict';
import { StepInputBuffer } from '../../src/models/step-inputs.ts';
import { memoryStats, type Tensor } from '../../src/tensor/index.ts';

const ids = Int32Array.from([1, 2, 3, 4, 5, 6]); // [2, 3]
const targets = Int32Array.from([2, 3, -100, 5, 6, -100]);
const cu = Int32Array.from([0, 2, 6, 6]);
const memoryOf = (t: Tensor): ArrayBufferLike => (t.storage as Int32Array).buffer;

test('one upload: views with the values and shapes of each input', () => {
  const inputs = new StepInputBuffer().upload('cpu', ids, 2, 3, targets, cu);
  assert.deepEqual(inputs.ids.shape, [2, 3]);
  assert.deepEqual([...inputs.ids.toInt32Array()], [...ids]);
  assert.deepEqual([...inputs.targets!.toInt32Array()], [...targets]);
  assert.deepEqual([...inputs.cuSeqlens!.toInt32Array()], [...cu]);
  assert.equal(memoryOf(inputs.ids), memoryOf(inputs.cuSeqlens!), 'one buffer');
  assert.deepEqual([...inputs.lossScale!.toFloat32Array()], [0.25], '4 supervised targets');
  for (const t of [inputs.ids, inputs.targets!, inputs.cuSeqlens!, inputs.lossScale!]) t.dispose();
  const unsupervised = new StepInputBuffer().upload('cpu', ids, 2, 3, new Int32Array(6).fill(-100), null);
  assert.deepEqual([...unsupervised.lossScale!.toFloat32Array()], [0], 'no target: 0, not infinity');
  for (const t of [unsupervised.ids, unsupervised.targets!, unsupervised.lossScale!]) t.dispose();
  const none = new StepInputBuffer().upload('cpu', ids, 2, 3, null, null);
  assert.equal(none.targets, null);
  assert.equal(none.cuSeqlens, null);
  assert.equal(none.lossScale, null);
  none.ids.dispose();
});

test('the buffer is reused once the views are gone, and never while one is held', () => {
  const buf = new StepInputBuffer();
  const first = buf.upload('cpu', ids, 2, 3, targets, cu);
  const firstMemory = memoryOf(first.ids);
  for (const t of [first.ids, first.targets!, first.cuSeqlens!, first.lossScale!]) t.dispose();
  const live = memoryStats().liveTensors;
  const second = buf.upload('cpu', ids.map((v) => v + 10), 2, 3, targets, cu);
  assert.equal(memoryOf(second.ids), firstMemory, 'free: written again in place');
  assert.equal(memoryStats().liveTensors, live + 4, 'no new buffer, four views');
  second.targets!.dispose();
  second.cuSeqlens!.dispose();
  second.lossScale!.dispose();
  // second.ids is still held (as a pending backward would hold it): the next upload goes elsewhere
  const third = buf.upload('cpu', ids.map((v) => v + 20), 2, 3, targets, cu);
  assert.notEqual(memoryOf(third.ids), firstMemory);
  assert.deepEqual([...second.ids.toInt32Array()], [11, 12, 13, 14, 15, 16], 'the held view keeps its values');
  assert.deepEqual([...third.ids.toInt32Array()], [21, 22, 23, 24, 25, 26]);
  for (const t of [second.ids, third.ids, third.targets!, third.cuSeqlens!, third.lossScale!]) t.dispose();
});
