import test from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/models/index.ts';
import { LOGITS_ATOL, LOSS_ATOL, MODELS, assertClose, assertGradClose, floats, get, readExpected, rows } from './fixtures.ts';

const H = 64;
const KV = 2;
const GROUP = 2; // q heads per kv head
const D = 16;

/** The InternLM2 packing rule, restated: per kv head, its q heads, then k, then v (rows of [*, H]). */
function packWqkv(q: Float32Array, k: Float32Array, v: Float32Array): Float32Array {
  const out = new Float32Array((KV * (GROUP + 2) * D) * H);
  let row = 0;
  const copy = (src: Float32Array, head: number) => {
    out.set(src.subarray(head * D * H, (head + 1) * D * H), row * H);
    row += D;
  };
  for (let g = 0; g < KV; g++) {
    for (let j = 0; j < GROUP; j++) copy(q, g * GROUP + j);
    copy(k, g);
    copy(v, g);
  }
  return out;
}

test('internlm2: the llama_forward weights in InternLM2 layout reproduce its logits, loss and gradients', async () => {
  const exp = readExpected('llama_forward');
  const model = await loadModel(`${MODELS}/internlm2/model`);
  const params = new Map(model.namedParameters());
  for (const n of ['model.tok_embeddings.weight', 'output.weight', 'model.layers.1.attention.wqkv.weight', 'model.layers.1.attention.wo.weight',
    'model.layers.1.feed_forward.w1.weight', 'model.layers.1.attention_norm.weight', 'model.layers.1.ffn_norm.weight']) {
    assert.ok(params.has(n), `module names are InternLM2's: ${n}`);
  }
  assert.equal(params.size, 17); // 3 + 2 layers x (wqkv, wo, w1, w2, w3, 2 norms)

  model.train();
  const { logits, loss } = model.forward(rows(get(exp, 'input_ids')), { labels: rows(get(exp, 'labels')) });
  assertClose(logits.toFloat32Array(), floats(get(exp, 'logits')), LOGITS_ATOL, 'logits');
  assertClose([loss!.item()], floats(get(exp, 'loss')), LOSS_ATOL, 'loss');

  // The packed projection's gradient is the Llama q/k/v gradients packed the same way.
  loss!.backward();
  for (const layer of [0, 1]) {
    const g = (n: string) => floats(get(exp, `grad.model.layers.${layer}.self_attn.${n}.weight`));
    const expected = packWqkv(g('q_proj'), g('k_proj'), g('v_proj'));
    assertGradClose(params.get(`model.layers.${layer}.attention.wqkv.weight`)!.grad!.toFloat32Array(), expected, `layer ${layer} wqkv`);
    assertGradClose(params.get(`model.layers.${layer}.feed_forward.w2.weight`)!.grad!.toFloat32Array(), floats(get(exp, `grad.model.layers.${layer}.mlp.down_proj.weight`)), `layer ${layer} w2`);
  }
  assertGradClose(params.get('output.weight')!.grad!.toFloat32Array(), floats(get(exp, 'grad.lm_head.weight')), 'output');
});
