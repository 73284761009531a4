// How a model folder's files decide the special tokens and the chat template, and the errors for
// folders that hold no usable tokenizer.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { loadTokenizer } from '../../src/tokenizer/index.ts';
import { FIXTURES, fixtureTokenizerDir } from './fixture-tokenizers.ts';

const json = (o: unknown): string => JSON.stringify(o);

test('SentencePiece folder without config: BOS/EOS/unk from the model, BOS added, no pad', async () => {
  const tok = await loadTokenizer(fixtureTokenizerDir('internlm2_style'));
  assert.deepEqual([tok.bosToken, tok.eosToken, tok.unkToken, tok.padToken], ['<s>', '</s>', '<unk>', null]);
  assert.equal(tok.encode('a')[0], tok.bosTokenId);
  assert.equal(tok.tokenizerClass, null);
});

test('decode: ids the model has and the tokenizer has not (a padded vocabulary) come out as nothing, in both kinds of tokenizer', async () => {
  for (const name of ['internlm2_style', 'qwen3'] as const) {
    const tok = await loadTokenizer(fixtureTokenizerDir(name));
    const ids = tok.encode('Hello there', { addSpecialTokens: false });
    assert.equal(tok.decode([ids[0]!, 10_000_000, ...ids.slice(1)]), tok.decode(ids), name);
  }
});

test('tokenizer_config.json: add_bos_token/add_eos_token, and added tokens split out before SentencePiece', async () => {
  const dir = fixtureTokenizerDir('internlm2_style', {
    'tokenizer_config.json': json({
      add_bos_token: false,
      add_eos_token: true,
      eos_token: '</s>',
      // InternLM2 maps chat tokens onto pieces of other names; here '<|custom|>' onto piece 3
      added_tokens_decoder: { '3': { content: '<|custom|>', special: true } },
    }),
  });
  const tok = await loadTokenizer(dir);
  const plain = await loadTokenizer(fixtureTokenizerDir('internlm2_style'));
  const ids = tok.encode('Hi<|custom|>there');
  assert.deepEqual(ids, [
    ...plain.encode('Hi', { addSpecialTokens: false }),
    3,
    ...plain.encode('there', { addSpecialTokens: false }),
    tok.eosTokenId,
  ]);
  assert.equal(tok.decode(ids.slice(0, -1)), 'Hi<|custom|>there');
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'Hi there'); // 'there' was encoded with its own '▁'
  assert.equal(tok.tokenToId('<|custom|>'), 3);
});

test('special_tokens_map.json overrides tokenizer_config.json; config.json fills ids nothing names', async () => {
  const dir = fixtureTokenizerDir('mistral', {
    'tokenizer_config.json': json({ ...JSON.parse(fs.readFileSync(path.join(FIXTURES, 'mistral_tokenizer_config.json'), 'utf8')), pad_token: undefined }),
    'special_tokens_map.json': json({ eos_token: { content: '<unk>', lstrip: false } }),
    'config.json': json({ pad_token_id: 2, bos_token_id: 5 }),
  });
  const tok = await loadTokenizer(dir);
  assert.equal(tok.eosToken, '<unk>');
  assert.equal(tok.eosTokenId, 0);
  assert.equal(tok.bosTokenId, 1); // named by tokenizer_config: config.json's 5 not used
  assert.deepEqual([tok.padToken, tok.padTokenId], ['</s>', 2]);
});

test('chat_template.jinja takes precedence; variables reach the template; a folder without one is an error', async () => {
  const dir = fixtureTokenizerDir('mistral', {
    'chat_template.jinja': '{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ suffix }}',
  });
  const tok = await loadTokenizer(dir);
  const text = tok.applyChatTemplate([{ role: 'user', content: 'hi' }], { tokenize: false, variables: { suffix: '!' } });
  assert.equal(text, '<s>[user]hi!');
  assert.deepEqual(tok.applyChatTemplate([{ role: 'user', content: 'hi' }]), tok.encode('<s>[user]hi', { addSpecialTokens: false }));
  const none = await loadTokenizer(fixtureTokenizerDir('mistral'));
  assert.throws(() => none.applyChatTemplate([{ role: 'user', content: 'hi' }]), /the tokenizer has no chat_template/);
  const raising = await loadTokenizer(fixtureTokenizerDir('mistral', { 'chat_template.jinja': "{{ raise_exception('roles must alternate') }}" }));
  assert.throws(() => raising.applyChatTemplate([]), (e: unknown) => e instanceof XtunerError && /chat_template failed.*roles must alternate/.test(e.message));
});

test('bad folders: missing, no tokenizer file, broken tokenizer.json, not a SentencePiece model', async () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-tok-bad-'));
  process.once('exit', () => fs.rmSync(empty, { recursive: true, force: true }));
  await assert.rejects(loadTokenizer(path.join(empty, 'nope')), /tokenizer folder not found: .*nope/);
  await assert.rejects(loadTokenizer(empty), new RegExp(`${empty}: no tokenizer.json or tokenizer.model in this folder`));
  fs.writeFileSync(path.join(empty, 'tokenizer.model'), 'not a protobuf at all, just text');
  await assert.rejects(loadTokenizer(empty), /tokenizer\.model: not a SentencePiece model/);
  fs.writeFileSync(path.join(empty, 'tokenizer.json'), '{"model": ');
  await assert.rejects(loadTokenizer(empty), /tokenizer\.json: not valid JSON/);
  fs.writeFileSync(path.join(empty, 'tokenizer_config.json'), '[1, 2]');
  await assert.rejects(loadTokenizer(empty), /tokenizer_config\.json: expected a JSON object at the top level/);
});
