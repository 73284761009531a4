import test from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/models/index.ts';
import { Linear } from '../../src/nn/index.ts';
import { LOGITS_ATOL, LOSS_ATOL, MODELS, assertClose, assertGradClose, floats, get, readExpected, rows } from './fixtures.ts';

test('qwen2: logits, loss and all gradients (q/k/v biases, tied embedding) match PyTorch', async () => {
  const exp = readExpected('qwen2');
  const model = await loadModel(`${MODELS}/qwen2/model`);
  const params = new Map(model.namedParameters());
  // Tied: the head is the embedding tensor itself, listed once under the embedding's name.
  assert.ok(!params.has('lm_head.weight'));
  assert.equal((model.getSubmodule('lm_head') as Linear).weight, params.get('model.embed_tokens.weight'));
  assert.ok(params.has('model.layers.0.self_attn.q_proj.bias') && !params.has('model.layers.0.self_attn.o_proj.bias'));

  model.train();
  const { logits, loss } = model.forward(rows(get(exp, 'input_ids')), { labels: rows(get(exp, 'labels')) });
  assertClose(logits.toFloat32Array(), floats(get(exp, 'logits')), LOGITS_ATOL, 'logits');
  assertClose([loss!.item()], floats(get(exp, 'loss')), LOSS_ATOL, 'loss');
  loss!.backward();
  const gradNames = [...exp.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
  assert.deepEqual([...params.keys()].sort(), gradNames.sort());
  for (const name of gradNames) {
    // The embedding's gradient holds both uses: the lookup and the tied head.
    assertGradClose(params.get(name)!.grad!.toFloat32Array(), floats(get(exp, `grad.${name}`)), name);
  }
});
