// The model fixtures on CUDA (float32 weights): logits, loss and every gradient against PyTorch's
// numbers, packed rows, and greedy decoding with the KV cache, at the fixtures' tolerances. Skips
// without a usable GPU, or while the engine does not route device 'cuda' to the CUDA backend.

import assert from 'node:assert/strict';
import test from 'node:test';
import { loadModel } from '../../src/models/index.ts';
import { zeros } from '../../src/tensor/index.ts';
import { LOGITS_ATOL, LOSS_ATOL, MODELS, assertClose, assertGradClose, floats, get, readExpected, rows } from '../models/fixtures.ts';
import { SKIP as NO_CUDA } from './helpers.ts';

function engineSkip(): string | false {
  if (NO_CUDA) return NO_CUDA;
  try {
    zeros([1], { device: 'cuda' }).dispose();
    return false;
  } catch (e) {
    return `the engine does not use the CUDA backend yet: ${(e as Error).message}`;
  }
}
const SKIP = engineSkip();

for (const [name, dir] of [
  ['llama_forward', 'llama_forward'],
  ['qwen2', 'qwen2'],
] as const) {
  test(`${name} on CUDA: logits, loss and every gradient match PyTorch`, { skip: SKIP }, async () => {
    const exp = readExpected(name);
    const model = await loadModel(`${MODELS}/${dir}/model`, { device: 'cuda' });
    model.train();
    const { logits, loss } = model.forward(rows(get(exp, 'input_ids')), { labels: rows(get(exp, 'labels')) });
    assert.equal(logits.device, 'cuda');
    assertClose(logits.toFloat32Array(), floats(get(exp, 'logits')), LOGITS_ATOL, 'logits');
    assertClose([loss!.item()], floats(get(exp, 'loss')), LOSS_ATOL, 'loss');
    loss!.backward();
    const params = new Map(model.namedParameters());
    for (const key of exp.keys()) {
      if (!key.startsWith('grad.')) continue;
      const g = params.get(key.slice(5))?.grad;
      assert.ok(g, `${key.slice(5)} has a gradient`);
      assertGradClose(g.toFloat32Array(), floats(get(exp, key)), key.slice(5));
    }
  });
}

test('llama_packed on CUDA: packed rows give each sample its own logits', { skip: SKIP }, async () => {
  const exp = readExpected('llama_packed');
  const model = await loadModel(`${MODELS}/llama_forward/model`, { device: 'cuda' });
  const cu = get(exp, 'cu_seqlens').data as Int32Array;
  const { logits } = model.forward(rows(get(exp, 'input_ids')), { positionIds: rows(get(exp, 'position_ids')), cuSeqlens: cu });
  assertClose(logits.toFloat32Array(), floats(get(exp, 'logits')), LOGITS_ATOL, 'packed logits');
});

test('llama_forward_generate on CUDA: greedy decoding with the KV cache gives the same ids', { skip: SKIP }, async () => {
  const exp = readExpected('llama_forward_generate');
  const model = await loadModel(`${MODELS}/llama_forward/model`, { device: 'cuda' });
  const prompt = rows(get(exp, 'prompt'))[0]!;
  const fresh = model.generate(prompt, { maxNewTokens: 12, stopIds: [] });
  assert.deepEqual([...prompt, ...fresh], rows(get(exp, 'generated'))[0]!);
});
