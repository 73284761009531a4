// The data pipeline beyond the fixture conversations: prompt_template 'hf' against the ids of
// transformers' apply_chat_template (answers that also occur in the template's text, Metaspace
// tokenizers, end-of-turn markers other than eos, templates that rewrite earlier answers), Python's
// str.strip in the map functions, and packing against a port of XTuner's Packer.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { encodeWithChatTemplate, turnsToMessages } from '../../src/data/chat-template-encode.ts';
import { IGNORE_INDEX, type EncodedSample } from '../../src/data/encode.ts';
import { mapRecord, type Turn } from '../../src/data/formats.ts';
import { packSamples } from '../../src/data/pack.ts';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizer/index.ts';
import { FIXTURES, fixtureTokenizer, fixtureTokenizerDir } from '../tokenizer/fixture-tokenizers.ts';

/** The supervised tokens of a sample, decoded. */
function supervisedText(tok: Tokenizer, s: EncodedSample): string {
  return tok.decode(Array.from(s.labels).filter((l) => l !== IGNORE_INDEX));
}

/** What transformers' apply_chat_template(messages, tokenize=True) gives: the whole rendering tokenized once. */
function wholeRendering(tok: Tokenizer, turns: Turn[]): number[] {
  return tok.applyChatTemplate(turnsToMessages(turns));
}

test('template hf (Qwen3): a short answer that also occurs in the template text ("a" in "<|im_start|>") is labelled where it is, and <|im_start|> stays one token', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const turns: Turn[] = [{ input: 'Pick a letter.', output: 'a' }];
  const { sample } = encodeWithChatTemplate(turns, tok, 1000);
  assert.deepEqual(Array.from(sample.inputIds), wholeRendering(tok, turns));
  assert.equal(supervisedText(tok, sample), 'a<|im_end|>');
});

test('template hf (Mistral tokenizer.json, Prepend normalizer): the ids are those of the whole rendering, as apply_chat_template gives them at inference', async () => {
  const config = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'mistral_tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  // Mistral-7B-Instruct-v0.1's chat_template
  config.chat_template =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
  const tok = await loadTokenizer(fixtureTokenizerDir('mistral', { 'tokenizer_config.json': JSON.stringify(config) }));
  const turns: Turn[] = [
    { input: 'What is 2+2?', output: 'It is 4.' },
    { input: 'And 3+3?', output: 'Six.' },
  ];
  const { sample } = encodeWithChatTemplate(turns, tok, 1000);
  // ours: '▁▁[/INST]' and '▁It' (each span gets its own '▁' prefix); transformers: '▁[/INST]' 'It'
  assert.deepEqual(Array.from(sample.inputIds), wholeRendering(tok, turns));
});

test('template hf (InternLM2-style: eos </s>, turns end with <|im_end|>): the end-of-turn token after each answer is supervised', async () => {
  const decl = (content: string): object => ({ content, lstrip: false, rstrip: false, normalized: false, single_word: false, special: true });
  const config = {
    tokenizer_class: 'InternLM2Tokenizer',
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    added_tokens_decoder: { 0: decl('<unk>'), 1: decl('<s>'), 2: decl('</s>'), 3: decl('<|im_start|>'), 4: decl('<|im_end|>') },
    // internlm2-chat's chat_template
    chat_template:
      "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}" +
      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
  };
  const tok = await loadTokenizer(fixtureTokenizerDir('internlm2_style', { 'tokenizer_config.json': JSON.stringify(config) }));
  const { sample } = encodeWithChatTemplate([{ input: 'Hi', output: 'Hello' }], tok, 1000);
  // without <|im_end|> in the labels the model never learns to end its turn
  assert.equal(supervisedText(tok, sample), 'Hello<|im_end|>');
});

test('template hf (Qwen3): earlier answers with <think> reasoning, which the template drops, do not make the record an error (chat-template-encode.ts says rewriting templates "still work")', async () => {
  const tok = await fixtureTokenizer('qwen3');
  const turns: Turn[] = [
    { input: 'Q1', output: '<think>\nr1\n</think>\n\nA1' },
    { input: 'Q2', output: '<think>\nr2\n</think>\n\nA2' },
  ];
  // transformers renders turn 1 as "...assistant\nA1<|im_end|>": what is left of the answer is what can be supervised
  const { sample } = encodeWithChatTemplate(turns, tok, 1000);
  assert.deepEqual(Array.from(sample.inputIds), wholeRendering(tok, turns));
  assert.equal(supervisedText(tok, sample), 'A1<|im_end|><think>\nr2\n</think>\n\nA2<|im_end|>');
});

test("pretrain and oasst1 strip as Python's str.strip(): a leading BOM (U+FEFF) kept, U+0085 / U+001C stripped", () => {
  assert.deepEqual(mapRecord('pretrain', { text: '\ufeffDoc\u0085' }), [{ input: '', output: '\ufeffDoc', needEosToken: true }]);
  assert.deepEqual(mapRecord('oasst1', { text: '### Human: Q\u001c### Assistant: A\u0085' }), [{ input: 'Q', output: 'A' }]);
});

// XTuner's Packer (xtuner/dataset/utils.py) with use_varlen_attn=True, one map() batch: rows of
// chunk_size, cumulative_len per row, position_ids from it. Ported line by line.
function xtunerPacker(lengths: number[], chunk: number): { cumulative: number[][]; positions: number[][] } {
  let residual = [0];
  for (const n of lengths) residual.push(residual[residual.length - 1]! + n);
  const total = residual[residual.length - 1]!;
  const chunkNum = Math.floor(total / chunk);
  const cumulative: number[][] = [];
  let ptrL = 0;
  let lengthTrain = 0;
  for (let c = 0; c < chunkNum; c++) {
    lengthTrain = (c + 1) * chunk;
    let ptrR = residual.findIndex((v) => v >= lengthTrain); // np.searchsorted(side='left')
    if (ptrR < 0) ptrR = residual.length;
    let cur: number[];
    if (residual[ptrR] === lengthTrain) {
      cur = residual.slice(ptrL, ptrR + 1);
      ptrL = ptrR + 1;
    } else {
      cur = [...residual.slice(ptrL, ptrR), lengthTrain];
      ptrL = ptrR;
    }
    cur = cur.map((v) => v - c * chunk);
    if (cur[0] !== 0) cur = [0, ...cur];
    cumulative.push(cur);
  }
  residual = residual.slice(ptrL).map((v) => v - lengthTrain);
  const positions = cumulative.map((cu) => {
    const p: number[] = [];
    for (let i = 0; i + 1 < cu.length; i++) for (let k = 0; k < cu[i + 1]! - cu[i]!; k++) p.push(k);
    return p;
  });
  return { cumulative, positions };
}

test("packing: full rows equal XTuner's Packer (use_varlen_attn) — cu_seqlens and position ids — on 300 random length lists", () => {
  let s = 42;
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x80000000;
  };
  for (let k = 0; k < 300; k++) {
    const chunk = 1 + Math.floor(rnd() * 40);
    const lengths = Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => 1 + Math.floor(rnd() * chunk)); // cut to max_length already
    let id = 0;
    const samples: EncodedSample[] = lengths.map((n) => {
      const inputIds = Int32Array.from({ length: n }, () => ++id);
      return { inputIds, labels: inputIds.map((v, i) => (i === 0 ? IGNORE_INDEX : v)) };
    });
    const { rows } = packSamples(samples, chunk);
    const ref = xtunerPacker(lengths, chunk);
    ref.cumulative.forEach((cu, r) => {
      assert.deepEqual(Array.from(rows[r]!.cuSeqlens), cu, `row ${r} of ${JSON.stringify(lengths)} / ${chunk}`);
      assert.deepEqual(Array.from(rows[r]!.positionIds), ref.positions[r]);
      assert.deepEqual(Array.from(rows[r]!.inputIds), Array.from({ length: chunk }, (_, i) => r * chunk + i + 1));
    });
    const total = lengths.reduce((a, b) => a + b, 0);
    assert.equal(rows.length, Math.ceil(total / chunk));
  }
});
