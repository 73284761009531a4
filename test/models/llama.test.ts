import test from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/models/index.ts';
import { LOGITS_ATOL, LOSS_ATOL, MODELS, assertClose, assertGradClose, floats, get, readExpected, rows } from './fixtures.ts';

const MODEL_DIR = `${MODELS}/llama_forward/model`;

test('llama_forward: logits, loss and the gradient of every parameter match PyTorch', async () => {
  const exp = readExpected('llama_forward');
  const model = await loadModel(MODEL_DIR);
  model.train();
  const { logits, loss } = model.forward(rows(get(exp, 'input_ids')), { labels: rows(get(exp, 'labels')) });
  assert.deepEqual(logits.shape, [2, 16, 1000]);
  assertClose(logits.toFloat32Array(), floats(get(exp, 'logits')), LOGITS_ATOL, 'logits');
  assert.ok(loss);
  assertClose([loss.item()], floats(get(exp, 'loss')), LOSS_ATOL, 'loss');

  loss.backward();
  const gradNames = [...exp.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
  const params = new Map(model.namedParameters());
  assert.deepEqual([...params.keys()].sort(), gradNames.sort(), 'parameter names are the HF names');
  for (const name of gradNames) {
    const g = params.get(name)!.grad;
    assert.ok(g, `${name} has a gradient`);
    assert.deepEqual(g.shape, get(exp, `grad.${name}`).shape, name);
    assertGradClose(g.toFloat32Array(), floats(get(exp, `grad.${name}`)), name);
  }
});

test('llama_forward_generate: greedy decoding with the KV cache gives the same ids', async () => {
  const exp = readExpected('llama_forward_generate');
  const model = await loadModel(MODEL_DIR);
  const prompt = rows(get(exp, 'prompt'))[0]!;
  const expected = rows(get(exp, 'generated'))[0]!;
  const streamed: number[] = [];
  const fresh = model.generate(prompt, { maxNewTokens: 12, stopIds: [], onToken: (id) => void streamed.push(id) });
  // generate returns the new ids only; the fixture holds prompt + new.
  assert.deepEqual([...prompt, ...fresh], expected);
  assert.deepEqual(streamed, fresh);
});

test('llama_packed: a packed row equals each sample run alone (no attention across samples)', async () => {
  const exp = readExpected('llama_packed');
  const model = await loadModel(MODEL_DIR);
  const cu = get(exp, 'cu_seqlens').data as Int32Array;
  const { logits } = model.forward(rows(get(exp, 'input_ids')), { positionIds: rows(get(exp, 'position_ids')), cuSeqlens: cu });
  assertClose(logits.toFloat32Array(), floats(get(exp, 'logits')), LOGITS_ATOL, 'packed logits');
});
