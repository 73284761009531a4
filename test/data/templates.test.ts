// Every XTuner prompt template on a two-turn conversation: the token sequence decoded, with the
// supervised tokens between ⟦ ⟧. The golden strings are written out by hand from XTuner's
// xtuner/utils/templates.py and encode_fn rules, not produced by our code. Qwen3's tokenizer is
// used: no BOS, EOS '<|im_end|>'.

import test from 'node:test';
import assert from 'node:assert/strict';
import { SampleEncoder } from '../../src/data/sample-encoder.ts';
import type { Turn } from '../../src/data/formats.ts';
import { RecordError } from '../../src/data/formats.ts';
import { PROMPT_TEMPLATE, SYSTEM_TEMPLATE, getPromptTemplate } from '../../src/tokenizer/templates.ts';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.ts';
import { fixtureTokenizer } from '../tokenizer/fixture-tokenizers.ts';

const TWO_TURNS: Turn[] = [
  { system: 'SYS', input: 'Q1', output: 'A1' },
  { input: 'Q2', output: 'A2' },
];
const E = '<|im_end|>'; // Qwen3's EOS

const VICUNA =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. SYS\n USER: Q1 ASSISTANT:⟦A1" +
  E + '⟧\nUSER: Q2 ASSISTANT:⟦A2' + E + '⟧\n';
const DEEPSEEK_CODER =
  'You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeekCompany, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer. SYS\n' +
  '### Instruction:\nQ1\n### Response:\n⟦A1' + E + '⟧\n### Instruction:\nQ2\n### Response:\n⟦A2' + E + '⟧\n';
const CHATML =
  '<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n⟦A1<|im_end|>⟧\n' +
  '<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n⟦A2<|im_end|>⟧\n';
const INST = `[INST] SYS [/INST]\n[INST] Q1 [/INST]⟦A1${E}⟧\n[INST] Q2 [/INST]⟦A2${E}⟧\n`;

const GOLDEN: Record<string, string> = {
  default: `<|System|>:SYS\n<|User|>:Q1\n<|Bot|>:⟦A1${E}⟧\n<|User|>:Q2\n<|Bot|>:⟦A2${E}⟧\n`,
  zephyr: `<|system|>\nSYS\n<|user|>\nQ1\n<|assistant|>\n⟦A1${E}⟧\n<|user|>\nQ2\n<|assistant|>\n⟦A2${E}⟧\n`,
  internlm_chat: '<|System|>:SYS\n<|User|>:Q1<eoh>\n<|Bot|>:⟦A1<eoa>⟧\n<|User|>:Q2<eoh>\n<|Bot|>:⟦A2<eoa>⟧\n',
  internlm2_chat: CHATML,
  moss_sft: `SYS\n<|Human|>: Q1<eoh>\n⟦A1${E}⟧\n<|Human|>: Q2<eoh>\n⟦A2${E}⟧\n`,
  llama2_chat:
    '[INST] <<SYS>>\n You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure that your responses are socially unbiased and positive in nature.\nSYS\n<</SYS>>\n [/INST] ' +
    `[INST] Q1 [/INST]⟦A1${E}⟧\n[INST] Q2 [/INST]⟦A2${E}⟧\n`,
  code_llama_chat: `SYS\n[INST] Q1 [/INST]⟦A1${E}⟧[INST] Q2 [/INST]⟦A2${E}⟧`,
  chatglm2: `SYS\n[Round 1]\n\n问：Q1\n\n答：⟦A1${E}⟧\n\n[Round 2]\n\n问：Q2\n\n答：⟦A2${E}⟧\n\n`,
  chatglm3: `<|system|>\nSYS<|user|>\nQ1<|assistant|>\n⟦A1${E}⟧\n<|user|>\nQ2<|assistant|>\n⟦A2${E}⟧\n`,
  qwen_chat: CHATML,
  baichuan_chat: `SYS\n<reserved_102>Q1<reserved_103>⟦A1${E}⟧\n<reserved_102>Q2<reserved_103>⟦A2${E}⟧\n`,
  baichuan2_chat: `SYS\n<reserved_106>Q1<reserved_107>⟦A1${E}⟧\n<reserved_106>Q2<reserved_107>⟦A2${E}⟧\n`,
  wizardlm: VICUNA,
  wizardcoder:
    'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\nSYS\n ' +
    `### Instruction:\nQ1\n\n### Response:⟦A1${E}⟧\n\n### Instruction:\nQ2\n\n### Response:⟦A2${E}⟧\n\n`,
  vicuna: VICUNA,
  deepseek_coder: DEEPSEEK_CODER,
  deepseekcoder: DEEPSEEK_CODER,
  deepseek_moe: INST,
  deepseek_v2: 'SYS\n\nUser: Q1\n\nAssistant: ⟦A1<｜end▁of▁sentence｜>⟧User: Q2\n\nAssistant: ⟦A2<｜end▁of▁sentence｜>⟧',
  mistral: INST,
  mixtral: INST,
  minicpm3: CHATML,
  gemma:
    `<start_of_turn>system\nSYS<end_of_turn>\n<start_of_turn>user\nQ1<end_of_turn>\n<start_of_turn>model\n⟦A1<end_of_turn>${E}⟧\n` +
    `<start_of_turn>user\nQ2<end_of_turn>\n<start_of_turn>model\n⟦A2<end_of_turn>${E}⟧\n`,
  cohere_chat:
    '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>SYS<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Q1<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>⟦A1<|END_OF_TURN_TOKEN|>⟧' +
    '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Q2<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>⟦A2<|END_OF_TURN_TOKEN|>⟧',
  llama3_chat:
    '<|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n⟦A1<|eot_id|>⟧' +
    '<|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n⟦A2<|eot_id|>⟧',
  phi3_chat: '<|system|>\nSYS<|end|>\n<|user|>\nQ1<|end|>\n<|assistant|>\n⟦A1<|end|>⟧\n<|user|>\nQ2<|end|>\n<|assistant|>\n⟦A2<|end|>⟧\n',
};

/** The sample's tokens decoded run by run, supervised runs between ⟦ ⟧. */
function showSupervised(tok: Tokenizer, ids: Int32Array, labels: Int32Array): string {
  let out = '';
  let i = 0;
  while (i < ids.length) {
    const sup = labels[i]! >= 0;
    let j = i;
    while (j < ids.length && labels[j]! >= 0 === sup) {
      if (sup) assert.equal(labels[j], ids[j], 'a supervised label is its input id');
      j++;
    }
    const text = tok.decode(ids.subarray(i, j));
    out += sup ? `⟦${text}⟧` : text;
    i = j;
  }
  return out;
}

async function render(template: string, turns: Turn[] = TWO_TURNS): Promise<string> {
  const tok = await fixtureTokenizer('qwen3');
  const enc = new SampleEncoder(tok, { format: 'conversation', promptTemplate: template, maxLength: 4096 });
  const out = enc.encodeConversation(turns);
  assert.equal(out.kind, 'sample');
  if (out.kind !== 'sample') throw new Error('unreachable');
  return showSupervised(tok, out.sample.inputIds, out.sample.labels);
}

test('the registry holds every template the issue lists, and XTuner’s others', () => {
  const listed = [
    'default', 'internlm_chat', 'internlm2_chat', 'qwen_chat', 'llama2_chat', 'llama3_chat', 'mistral', 'mixtral',
    'zephyr', 'gemma', 'phi3_chat', 'chatglm2', 'chatglm3', 'deepseek_coder', 'deepseek_v2', 'vicuna', 'wizardlm',
    'baichuan_chat', 'baichuan2_chat', 'moss_sft', 'code_llama_chat', 'wizardcoder', 'minicpm', 'minicpm3', 'cohere_chat',
  ];
  for (const name of listed) assert.ok(name in PROMPT_TEMPLATE, name);
  assert.deepEqual(Object.keys(PROMPT_TEMPLATE).sort(), [...listed, 'deepseekcoder', 'deepseek_moe'].sort());
  assert.deepEqual(Object.keys(GOLDEN).sort(), Object.keys(PROMPT_TEMPLATE).filter((n) => n !== 'minicpm').sort());
});

for (const [name, golden] of Object.entries(GOLDEN)) {
  test(`template ${name}: two turns, supervised parts as XTuner defines them`, async () => {
    assert.equal(await render(name), golden);
  });
}

test('template minicpm (no SYSTEM): two turns without a system; a system text is a record error', async () => {
  const noSystem: Turn[] = [{ input: 'Q1', output: 'A1' }, { input: 'Q2', output: 'A2' }];
  assert.equal(await render('minicpm', noSystem), `<用户> Q1 <AI>⟦A1${E}⟧\n<用户> Q2 <AI>⟦A2${E}⟧\n`);
  await assert.rejects(render('minicpm'), (e: unknown) => e instanceof RecordError && e.field === 'system' && /minicpm.*no SYSTEM/.test(e.message));
});

test('STOP_WORDS, SUFFIX_AS_EOS as XTuner defines them', () => {
  const stops: Record<string, string[]> = {
    internlm_chat: ['<eoa>'], internlm2_chat: ['<|im_end|>'], moss_sft: ['<eoc>', '<eom>'],
    qwen_chat: ['<|im_end|>', '<|endoftext|>'], minicpm3: ['<|im_end|>', '<|endoftext|>'], gemma: ['<end_of_turn>'],
    deepseek_v2: ['<｜end▁of▁sentence｜>'], cohere_chat: ['<|END_OF_TURN_TOKEN|>'], llama3_chat: ['<|eot_id|>'], phi3_chat: ['<|end|>'],
  };
  for (const [name, t] of Object.entries(PROMPT_TEMPLATE)) assert.deepEqual(t.STOP_WORDS, stops[name] ?? [], name);
  const suffixAsEos = Object.values(PROMPT_TEMPLATE).filter((t) => t.SUFFIX_AS_EOS).map((t) => t.name).sort();
  assert.deepEqual(suffixAsEos, ['cohere_chat', 'deepseek_v2', 'internlm2_chat', 'internlm_chat', 'llama3_chat', 'minicpm3', 'phi3_chat', 'qwen_chat']);
});

test('SYSTEM_TEMPLATE presets', () => {
  assert.deepEqual(Object.keys(SYSTEM_TEMPLATE).sort(), ['alpaca', 'arxiv_gentile', 'coder', 'colorist', 'lawyer', 'medical', 'moss_sft', 'sql']);
  assert.equal(SYSTEM_TEMPLATE.alpaca, 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n');
  assert.equal(SYSTEM_TEMPLATE.medical, '如果你是一名医生，请根据患者的描述回答医学问题。\n');
  assert.ok(SYSTEM_TEMPLATE.moss_sft.startsWith('You are an AI assistant whose name is {bot_name}.\nCapabilities and tools that {bot_name} can possess.\n'));
});

test('unknown template name: an error naming it, with the nearest name', () => {
  assert.throws(() => getPromptTemplate('internlm2_caht'), /unknown prompt_template "internlm2_caht" \(did you mean "internlm2_chat"\?\)/);
});

test('mistral tokenizer (BOS <s>=1, EOS </s>=2): BOS again after each EOS, not after SUFFIX_AS_EOS', async () => {
  const tok = await fixtureTokenizer('mistral');
  const enc = (t: string): number[] => tok.encode(t, { addSpecialTokens: false });
  const M = -100;
  const mask = (ids: number[]): number[] => ids.map(() => M);
  const check = (template: string, ids: number[], labels: number[]): void => {
    const out = new SampleEncoder(tok, { format: 'conversation', promptTemplate: template, maxLength: 4096 }).encodeConversation(TWO_TURNS);
    assert.equal(out.kind, 'sample');
    if (out.kind !== 'sample') return;
    assert.deepEqual(Array.from(out.sample.inputIds), ids, template);
    assert.deepEqual(Array.from(out.sample.labels), labels, template);
  };
  // default: [BOS] input1 [A1 EOS] SEP [BOS] input2 [A2 EOS] SEP
  const in1 = enc('<|System|>:SYS\n<|User|>:Q1\n<|Bot|>:');
  const in2 = enc('<|User|>:Q2\n<|Bot|>:');
  const [a1, a2, sep] = [enc('A1'), enc('A2'), enc('\n')];
  check(
    'default',
    [1, ...in1, ...a1, 2, ...sep, 1, ...in2, ...a2, 2, ...sep],
    [M, ...mask(in1), ...a1, 2, ...mask(sep), M, ...mask(in2), ...a2, 2, ...mask(sep)],
  );
  // internlm2_chat: SUFFIX is the EOS, so one BOS at the very start
  const j1 = enc('<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n');
  const j2 = enc('<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n');
  const [o1, o2] = [enc('A1<|im_end|>'), enc('A2<|im_end|>')];
  check(
    'internlm2_chat',
    [1, ...j1, ...o1, ...sep, ...j2, ...o2, ...sep],
    [M, ...mask(j1), ...o1, ...mask(sep), ...mask(j2), ...o2, ...mask(sep)],
  );
});

test("template hf: Qwen3's own chat_template; the answer and its <|im_end|> supervised", async () => {
  const turns: Turn[] = [{ input: '请做一下自我介绍', output: '我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦' }];
  // transformers' rendering of this conversation (tokenizer_reference.json), brackets added by hand
  const golden =
    '<|im_start|>user\n请做一下自我介绍<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n' +
    '⟦我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦<|im_end|>⟧\n';
  assert.equal(await render('hf', turns), golden);
  const multi = await render('hf', [{ system: 'S', input: 'Hi', output: 'Hello!' }, { input: 'Hi', output: 'Bye.' }]);
  assert.equal(
    multi,
    '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n⟦Hello!<|im_end|>⟧\n' +
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n⟦Bye.<|im_end|>⟧\n',
  );
});
