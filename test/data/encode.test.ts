// encode_fn details beyond the templates: loss-free answers, pre-training text, the cut to
// max_length, LLaVA's image token, dropped samples, a tokenizer without EOS. Expected ids are
// built by hand from the tokenizer's encoding of each piece (the tokenizer itself is checked
// against the Python reference in test/tokenizer/).

import test from 'node:test';
import assert from 'node:assert/strict';
import { IMAGE_TOKEN_INDEX } from '../../src/data/encode.ts';
import { SampleEncoder, type EncodeOutcome } from '../../src/data/sample-encoder.ts';
import { loadTokenizer } from '../../src/tokenizer/index.ts';
import { fixtureTokenizer, fixtureTokenizerDir } from '../tokenizer/fixture-tokenizers.ts';

const M = -100;

function sample(out: EncodeOutcome): { ids: number[]; labels: number[]; fullLength: number; truncated: boolean } {
  assert.equal(out.kind, 'sample');
  if (out.kind !== 'sample') throw new Error('unreachable');
  return { ids: Array.from(out.sample.inputIds), labels: Array.from(out.sample.labels), fullLength: out.fullLength, truncated: out.truncated };
}

test('openai "loss": false: that answer and its EOS are masked, the next one supervised', async () => {
  const tok = await fixtureTokenizer('mistral');
  const enc = (t: string): number[] => tok.encode(t, { addSpecialTokens: false });
  const e = new SampleEncoder(tok, { format: 'openai', promptTemplate: 'mistral', maxLength: 4096 });
  const s = sample(
    e.encodeRecord({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b', loss: false },
        { role: 'user', content: 'c' },
        { role: 'assistant', content: 'd' },
      ],
    }),
  );
  const [i1, o1, i2, o2, sep] = [enc('[INST] a [/INST]'), enc('b'), enc('[INST] c [/INST]'), enc('d'), enc('\n')];
  assert.deepEqual(s.ids, [1, ...i1, ...o1, 2, ...sep, 1, ...i2, ...o2, 2, ...sep]);
  const mask = (x: number[]): number[] => x.map(() => M);
  assert.deepEqual(s.labels, [M, ...mask(i1), ...mask(o1), M, ...mask(sep), M, ...mask(i2), ...o2, 2, ...mask(sep)]);
  // every answer loss-free: nothing to learn, dropped
  const none = e.encodeRecord({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b', loss: false }] });
  assert.equal(none.kind, 'no-label');
});

test('pretrain: BOS (masked), the text and EOS supervised; no template even if one is configured', async () => {
  const mistral = await fixtureTokenizer('mistral');
  const text = mistral.encode('Some document.', { addSpecialTokens: false });
  const s = sample(new SampleEncoder(mistral, { format: 'pretrain', promptTemplate: 'internlm2_chat', maxLength: 100 }).encodeRecord({ text: ' Some document.\n' }));
  assert.deepEqual(s.ids, [1, ...text, 2]);
  assert.deepEqual(s.labels, [M, ...text, 2]);
  const qwen = await fixtureTokenizer('qwen3');
  const q = sample(new SampleEncoder(qwen, { format: 'pretrain', promptTemplate: null, maxLength: 100 }).encodeRecord({ text: 'Some document.' }));
  assert.deepEqual(q.ids, [...qwen.encode('Some document.'), 151645]); // Qwen: no BOS
});

test('max_length cuts input ids and labels alike and reports the full length', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const record = { instruction: 'Hi', input: '', output: 'one two three four five six' };
  const full = sample(new SampleEncoder(tok, { format: 'alpaca', promptTemplate: 'default', maxLength: 1000 }).encodeRecord(record));
  const n = full.labels.findIndex((l) => l >= 0) + 2; // keep two answer tokens
  const e = new SampleEncoder(tok, { format: 'alpaca', promptTemplate: 'default', maxLength: n });
  const cut = sample(e.encodeRecord(record));
  assert.ok(full.ids.length > n + 3);
  assert.deepEqual(cut.ids, full.ids.slice(0, n));
  assert.deepEqual(cut.labels, full.labels.slice(0, n));
  assert.equal(cut.fullLength, full.ids.length);
  assert.equal(cut.truncated, true);
  assert.equal(full.truncated, false);
  assert.equal(e.encodeRecord({ instruction: 'Hi', input: '', output: '<nooutput>' }).kind, 'empty');
});

test('llava: the <image> of an input becomes IMAGE_TOKEN_INDEX (-200), masked', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const enc = (t: string): number[] => tok.encode(t, { addSpecialTokens: false });
  const e = new SampleEncoder(tok, { format: 'llava', promptTemplate: 'qwen_chat', maxLength: 100, withImageToken: true });
  const s = sample(e.encodeRecord({ conversations: [{ from: 'human', value: 'What?<image>' }, { from: 'gpt', value: 'A cat.' }] }));
  const before = enc('<|im_start|>user\n');
  const after = enc('\nWhat?<|im_end|>\n<|im_start|>assistant\n');
  assert.deepEqual(s.ids, [...before, IMAGE_TOKEN_INDEX, ...after, ...enc('A cat.<|im_end|>'), ...enc('\n')]);
  assert.equal(s.labels[before.length], M);
});

test('a template that needs EOS with a tokenizer that has none: an error saying so', async () => {
  const tok = await loadTokenizer(fixtureTokenizerDir('internlm2_style', { 'tokenizer_config.json': JSON.stringify({ eos_token: null }) }));
  assert.equal(tok.eosTokenId, null);
  const e = new SampleEncoder(tok, { format: 'alpaca', promptTemplate: 'default', maxLength: 100 });
  assert.throws(() => e.encodeRecord({ instruction: 'a', input: '', output: 'b' }), /the tokenizer has no eos_token, which this prompt template needs/);
  // a template whose SUFFIX is the EOS does not need one
  const ok = new SampleEncoder(tok, { format: 'alpaca', promptTemplate: 'internlm2_chat', maxLength: 100 });
  assert.equal(ok.encodeRecord({ instruction: 'a', input: '', output: 'b' }).kind, 'sample');
});
