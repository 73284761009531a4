// Our tokenizers against the Python reference (test/fixtures/tokenizers/tokenizer_reference.json,
// written by `tokenizers`, `sentencepiece` and `transformers.apply_chat_template`).

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, fixtureTokenizer } from './fixture-tokenizers.ts';

interface Reference {
  texts: string[];
  tokenizers: Record<'qwen3' | 'mistral', { encode_add_special: number[][]; encode_no_special: number[][]; decode_skip_special: string[] }>;
  qwen3_chat_template: { messages: { role: string; content: string }[]; rendered: string; rendered_with_generation_prompt: string }[];
  internlm2_style_spm: { vocab_size: number; encode: number[][]; pieces: string[][]; decode: string[] };
}

const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer_reference.json'), 'utf8')) as Reference;

test('reference has the 14 texts', () => {
  assert.equal(ref.texts.length, 14);
});

for (const name of ['qwen3', 'mistral'] as const) {
  const r = ref.tokenizers[name];

  test(`${name} tokenizer.json: ids with special tokens equal Python's for all texts`, async () => {
    const tok = await fixtureTokenizer(name);
    ref.texts.forEach((text, i) => assert.deepEqual(tok.encode(text), r.encode_add_special[i], `text ${i}`));
  });

  test(`${name} tokenizer.json: ids without special tokens equal Python's for all texts`, async () => {
    const tok = await fixtureTokenizer(name);
    ref.texts.forEach((text, i) =>
      assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), r.encode_no_special[i], `text ${i}`),
    );
  });

  test(`${name} tokenizer.json: decode(skipSpecialTokens) equals Python's`, async () => {
    const tok = await fixtureTokenizer(name);
    r.encode_add_special.forEach((ids, i) =>
      assert.equal(tok.decode(ids, { skipSpecialTokens: true }), r.decode_skip_special[i], `text ${i}`),
    );
  });
}

for (const name of ['qwen3', 'mistral', 'internlm2_style'] as const) {
  test(`${name} round trip: decode(encode(text)) is the text, for every text`, async () => {
    const tok = await fixtureTokenizer(name);
    for (const text of ref.texts) assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text);
  });
}

test('mistral special tokens: <s> is BOS (1) and is added; </s> is EOS (2); no pad', async () => {
  const tok = await fixtureTokenizer('mistral');
  assert.equal(tok.bosTokenId, 1);
  assert.equal(tok.eosTokenId, 2);
  assert.equal(tok.padTokenId, null);
  assert.equal(tok.decode([1, 22557], { skipSpecialTokens: false }), '<s> Hello');
});

test('qwen3 special tokens: no BOS, EOS <|im_end|> (151645), pad <|endoftext|> (151643)', async () => {
  const tok = await fixtureTokenizer('qwen3');
  assert.equal(tok.bosTokenId, null);
  assert.equal(tok.eosToken, '<|im_end|>');
  assert.equal(tok.eosTokenId, 151645);
  assert.equal(tok.padTokenId, 151643);
  assert.equal(tok.vocabSize, 151643 + 26);
});

test('internlm2_style.model (SentencePiece): ids equal Python sentencepiece for all texts', async () => {
  const tok = await fixtureTokenizer('internlm2_style');
  assert.equal(tok.backend, 'sentencepiece');
  assert.equal(tok.vocabSize, ref.internlm2_style_spm.vocab_size);
  ref.texts.forEach((text, i) =>
    assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), ref.internlm2_style_spm.encode[i], `text ${i}`),
  );
});

test('internlm2_style.model: pieces and decode equal Python sentencepiece', async () => {
  const tok = await fixtureTokenizer('internlm2_style');
  ref.texts.forEach((text, i) => {
    const ids = ref.internlm2_style_spm.encode[i]!;
    assert.deepEqual(ids.map((id) => tok.idToToken(id)), ref.internlm2_style_spm.pieces[i], `pieces ${i}`);
    assert.equal(tok.decode(ids), ref.internlm2_style_spm.decode[i], `decode ${i}`);
  });
});

test('internlm2_style.model: BOS <s> added with special tokens, skipped by skipSpecialTokens', async () => {
  const tok = await fixtureTokenizer('internlm2_style');
  assert.equal(tok.idToToken(tok.bosTokenId!), '<s>');
  assert.equal(tok.idToToken(tok.eosTokenId!), '</s>');
  const ids = tok.encode('Hello world!');
  assert.deepEqual(ids, [tok.bosTokenId, ...ref.internlm2_style_spm.encode[0]!]);
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'Hello world!');
  assert.equal(tok.decode(ids), '<s>Hello world!');
});

test('qwen3 chat_template renders byte-identically to transformers for both conversations', async () => {
  const tok = await fixtureTokenizer('qwen3');
  for (const c of ref.qwen3_chat_template) {
    assert.equal(tok.applyChatTemplate(c.messages, { tokenize: false }), c.rendered);
    assert.equal(
      tok.applyChatTemplate(c.messages, { tokenize: false, addGenerationPrompt: true }),
      c.rendered_with_generation_prompt,
    );
    // tokenize (the default) encodes the rendered text without adding special tokens
    assert.deepEqual(tok.applyChatTemplate(c.messages), tok.encode(c.rendered, { addSpecialTokens: false }));
  }
});
