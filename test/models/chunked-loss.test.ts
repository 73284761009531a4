// The loss-only forward ({ logits: false }): the LM head and cross-entropy run over row chunks, so
// the [B*T, V] logits never exist whole. Checked against PyTorch's numbers (the qwen2 fixture, tied
// embedding) and against the whole-logits path on a random model with unevenly supervised chunks
// (where a mean of chunk means would differ), plus its peak memory.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createModel, loadModel, type CausalLM } from '../../src/models/index.ts';
import { Rng, memoryStats, resetPeakBytes, type Tensor } from '../../src/tensor/index.ts';
import { LOSS_ATOL, MODELS, assertClose, assertGradClose, floats, get, lossAndGrads, readExpected, rows } from './fixtures.ts';

/** Chunked vs whole: the same float32 sums in another grouping. */
const SAME_LOSS_ATOL = 1e-6;
const SAME_GRAD_RTOL = 1e-5;

const LLAMA = {
  model_type: 'llama', vocab_size: 211, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128, initializer_range: 0.2,
};
const QWEN2 = { ...LLAMA, model_type: 'qwen2', tie_word_embeddings: true };

function trainable(config: Record<string, unknown>): CausalLM {
  const m = createModel(config, { seed: 3 });
  for (const p of m.parameters()) p.requiresGrad = true;
  m.train();
  return m;
}

function batch(b: number, t: number, vocab: number, seed: number): { ids: number[][]; labels: number[][] } {
  const rng = new Rng(seed);
  const ids = Array.from({ length: b }, () => Array.from({ length: t }, () => rng.int(vocab)));
  // Row 0 mostly unsupervised, row 1 fully: chunks hold very different numbers of targets.
  const labels = ids.map((r, i) => r.map((v, j) => (i === 0 && j % 5 !== 0 ? -100 : v)));
  return { ids, labels };
}

const run = lossAndGrads; // the loss and every gradient of one forward + backward

function assertSame(a: ReturnType<typeof run>, b: ReturnType<typeof run>): void {
  assert.ok(Math.abs(a.loss - b.loss) <= SAME_LOSS_ATOL, `loss ${a.loss} vs ${b.loss}`);
  for (const [n, g] of a.grads) {
    const h = b.grads.get(n)!;
    let scale = 0;
    let d = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(h[i]!));
      d = Math.max(d, Math.abs(g[i]! - h[i]!));
    }
    assert.ok(scale > 0, `${n}: zero gradient`);
    assert.ok(d <= SAME_GRAD_RTOL * scale, `${n}: max |diff| ${d} > ${SAME_GRAD_RTOL} x ${scale}`);
  }
}

test('chunked loss: qwen2 fixture loss and all gradients (tied embedding) match PyTorch', async () => {
  const exp = readExpected('qwen2');
  const model = await loadModel(`${MODELS}/qwen2/model`);
  model.train();
  const params = new Map(model.namedParameters());
  const got = run(model, () => model.forward(rows(get(exp, 'input_ids')), { labels: rows(get(exp, 'labels')), logits: false, lossChunkRows: 3 }));
  assertClose([got.loss], floats(get(exp, 'loss')), LOSS_ATOL, 'loss');
  for (const name of params.keys()) assertGradClose(got.grads.get(name)!, floats(get(exp, `grad.${name}`)), name);
});

for (const [name, config] of [['llama', LLAMA], ['qwen2 (tied)', QWEN2]] as const) {
  test(`chunked loss: ${name} loss and gradients equal the whole-logits path`, () => {
    const m = trainable(config);
    const { ids, labels } = batch(2, 23, 211, 1);
    const whole = run(m, () => m.forward(ids, { labels }));
    for (const rows of [7, 23, 1000]) assertSame(run(m, () => m.forward(ids, { labels, logits: false, lossChunkRows: rows })), whole);
  });
}

test('chunked loss: no supervised target gives 0 and zero gradients, as the whole path', () => {
  const m = trainable(LLAMA);
  const { ids } = batch(1, 12, 211, 2);
  const labels = [ids[0]!.map(() => -100)];
  const got = run(m, () => m.forward(ids, { labels, logits: false, lossChunkRows: 5 }));
  assert.equal(got.loss, 0);
  for (const [n, g] of got.grads) assert.ok(g.every((v) => v === 0), n);
});

test('chunked loss: { logits: false } without labels is refused', () => {
  const m = trainable(LLAMA);
  assert.throws(() => m.forward([[1, 2, 3]], { logits: false } as never), /needs labels/);
});

test('chunked loss: peak memory stays well under the whole [T, V] logits', () => {
  const big = { ...LLAMA, vocab_size: 8000, num_hidden_layers: 1 };
  const m = trainable(big);
  const { ids, labels } = batch(1, 512, 8000, 4);
  const peak = (f: () => { loss?: Tensor }): number => {
    const base = memoryStats().liveBytes;
    resetPeakBytes();
    run(m, f);
    return memoryStats().peakBytes - base;
  };
  const whole = peak(() => m.forward(ids, { labels }));
  const chunked = peak(() => m.forward(ids, { labels, logits: false, lossChunkRows: 64 }));
  const logitsBytes = 512 * 8000 * 4;
  console.log(`chunked loss peak: whole ${(whole / 2 ** 20).toFixed(1)} MiB, chunked ${(chunked / 2 ** 20).toFixed(1)} MiB (logits alone ${(logitsBytes / 2 ** 20).toFixed(1)} MiB)`);
  assert.ok(whole - chunked > logitsBytes, `chunked peak ${chunked} is not a logits tensor below whole ${whole}`);
});
