// Chat sessions as XTuner's chat tool builds them (prompt strings written from XTuner's
// internlm2_chat definition), stop words, and streaming that never shows half a character or
// the start of a stop word. The model is scripted: it "generates" given ids.

import fs from 'node:fs';
import test from 'node:test';
import assert from 'node:assert/strict';
import { loadTokenizer } from '../../src/tokenizer/index.ts';
import { PROMPT_TEMPLATE } from '../../src/tokenizer/templates.ts';
import { ChatSession, StopWordStream, type ChatModel } from '../../src/generate/chat-session.ts';
import { TINY_ASSISTANT_DIR } from '../../examples/tiny-assistant/build-model.ts';

const tok = await loadTokenizer(TINY_ASSISTANT_DIR);
const IM_END = tok.tokenToId('<|im_end|>')!;

/** A model that answers with `script` ids (one list per call), honouring stop ids and onToken. */
function scripted(...script: number[][]): ChatModel & { prompts: number[][] } {
  const prompts: number[][] = [];
  return {
    prompts,
    generate(promptIds, opts) {
      prompts.push([...promptIds]);
      const out: number[] = [];
      for (const id of script.shift()!) {
        if (out.length === opts.maxNewTokens) break;
        out.push(id);
        if (opts.onToken?.(id, out.length - 1) === false || opts.stopIds?.includes(id)) break;
      }
      return out;
    },
  };
}

const greedy = { maxNewTokens: 100, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 };

test('turns are rendered as XTuner chat does: SYSTEM once, INSTRUCTION per round, SEP between', () => {
  const answer1 = tok.encode('我是小助手', { addSpecialTokens: false });
  const model = scripted([...answer1, IM_END, 99, 99], [IM_END]);
  const session = new ChatSession(model, { tokenizer: tok, template: PROMPT_TEMPLATE.internlm2_chat, system: 'Be brief.', generation: greedy });

  const first = session.ask('你是谁？');
  assert.equal(first.text, '我是小助手');
  assert.equal(first.stoppedBy, 'stop');
  assert.deepEqual(first.ids, [...answer1, IM_END]);
  const prompt1 = tok.encode('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n');
  assert.deepEqual(model.prompts[0], prompt1);
  assert.equal(model.prompts[0]![0], tok.bosTokenId, 'the first turn starts with BOS');

  session.ask('再说一遍');
  const turn2 = tok.encode('<|im_start|>user\n再说一遍<|im_end|>\n<|im_start|>assistant\n', { addSpecialTokens: false });
  const sep = tok.encode('\n', { addSpecialTokens: false });
  assert.deepEqual(model.prompts[1], [...prompt1, ...answer1, IM_END, ...sep, ...turn2]);

  session.reset();
  assert.equal(session.historyLength, 0);
});

test('a stop word made of several tokens ends generation and is never shown', () => {
  const pieces: string[] = [];
  const ids = tok.encode('答案是42 STOP 之后', { addSpecialTokens: false });
  const session = new ChatSession(scripted(ids), { tokenizer: tok, template: null, stopWords: ['STOP'], generation: greedy });
  const r = session.ask('q', (p) => pieces.push(p));
  assert.equal(r.text, '答案是42 ');
  assert.equal(pieces.join(''), '答案是42 ');
  assert.ok(r.ids.length < ids.length, 'generation stopped at the stop word');
});

test('streaming holds back incomplete UTF-8 and possible stop-word prefixes', () => {
  // ids are bytes; decode is UTF-8 with U+FFFD for an incomplete sequence, as a byte-level tokenizer.
  const decode = (ids: number[]) => Buffer.from(ids).toString('utf8');
  const pieces: string[] = [];
  const s = new StopWordStream(['<end>'], decode, (p) => pieces.push(p));
  const bytes = [...Buffer.from('好<en'), ...Buffer.from('d>x')];
  let stopped = false;
  for (const b of bytes) {
    if (s.push(b)) {
      stopped = true;
      break;
    }
    assert.ok(!pieces.join('').includes('\ufffd'), 'never half a character');
    assert.ok(!pieces.join('').includes('<'), 'never the start of the stop word');
  }
  assert.ok(stopped);
  assert.equal(s.finish(), '好');
  assert.equal(pieces.join(''), '好');
});

test('without a stop the answer ends at max_new_tokens', () => {
  const ids = tok.encode('一二三四五六七八', { addSpecialTokens: false });
  const session = new ChatSession(scripted(ids), { tokenizer: tok, template: null, generation: { ...greedy, maxNewTokens: 3 } });
  const r = session.ask('q');
  assert.equal(r.stoppedBy, 'length');
  assert.equal(r.ids.length, 3);
});

test('streamed text, decoded a few ids at a time, is the whole answer decoded at once', async () => {
  const { fixtureTokenizer } = await import('../tokenizer/fixture-tokenizers.ts');
  const { seededRandom } = await import('../../src/data/rng.ts');
  const texts = (JSON.parse(fs.readFileSync('test/fixtures/tokenizers/tokenizer_reference.json', 'utf8')) as { texts: string[] }).texts;
  const uniform = seededRandom(5);
  for (const t of [tok, ...(await Promise.all((['qwen3', 'mistral', 'internlm2_style'] as const).map(fixtureTokenizer)))]) {
    const decode = (ids: number[]) => t.decode(ids, { skipSpecialTokens: true });
    // the reference texts (special tokens, emoji, CJK, spaces), then random ids (bytes cut anywhere)
    const answers = [...texts.map((x) => t.encode(x, { addSpecialTokens: false })), ...Array.from({ length: 20 }, () => Array.from({ length: 40 }, () => Math.floor(uniform() * t.vocabSize)))];
    for (const ids of answers) {
      const pieces: string[] = [];
      const s = new StopWordStream([], decode, (p) => pieces.push(p));
      for (const id of ids) s.push(id);
      const whole = decode(ids);
      assert.equal(s.finish(), whole, `ids ${ids.slice(0, 12).join(' ')}...`);
      assert.equal(pieces.join(''), whole);
    }
  }
});

test('a conversation that keeps its KV cache answers as one that runs every turn whole, running only each turn\'s new tokens', async () => {
  const { createModel } = await import('../../src/models/index.ts');
  const config = JSON.parse(fs.readFileSync(`${TINY_ASSISTANT_DIR}/config.json`, 'utf8')) as Record<string, unknown>;
  const model = createModel(config, { seed: 4 }).eval();
  const run = (keepCache: boolean) => {
    const fed: number[] = [];
    const nextRow = model.nextRow.bind(model);
    model.nextRow = (ids, cache) => (fed.push(ids.length), nextRow(ids, cache));
    const session = new ChatSession(model, { tokenizer: tok, template: PROMPT_TEMPLATE.internlm2_chat, system: 'Be brief.', generation: { ...greedy, maxNewTokens: 12 }, keepCache });
    const turns = ['你好', '再说一遍', 'why?'].map((q) => ({ ...session.ask(q), prompt: session.historyLength }));
    session.reset();
    turns.push({ ...session.ask('你好'), prompt: session.historyLength }); // a new conversation: shares the first turn's prefix
    session.dispose();
    delete (model as { nextRow?: unknown }).nextRow;
    return { turns, prefills: fed.filter((n) => n > 1) };
  };
  const whole = run(false);
  const kept = run(true);
  assert.deepEqual(kept.turns, whole.turns);
  // every turn after the first runs only what follows the cached ids: its own prompt, not the history
  assert.ok(kept.prefills.slice(1, 3).every((n, i) => n < whole.prefills[i + 1]!), `prefill lengths ${kept.prefills} against ${whole.prefills}`);
  assert.ok(kept.prefills[3]! < whole.prefills[3]! || kept.prefills.length < whole.prefills.length, 'the new conversation reuses the shared prefix');
});
