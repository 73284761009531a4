// XTuner's prompt templates (xtuner/utils/templates.py: PROMPT_TEMPLATE and SYSTEM_TEMPLATE), with
// the same names, keys and strings, so a config's `prompt_template` means here what it means in
// XTuner. `hf` is not a registry entry: it stands for the tokenizer's own chat_template.
//
// A conversation turn is rendered as SYSTEM (first turn with a system text only) + INSTRUCTION,
// then [output + SUFFIX] supervised, then EOS unless SUFFIX_AS_EOS, then SEP (not supervised).
// Placeholders: {system}, {input}, {round} (1-based turn number), {bot_name} (SYSTEM_TEMPLATE).

import { didYouMean } from '../did-you-mean.ts';
import { XtunerError } from '../errors.ts';

export interface PromptTemplate {
  readonly name: string;
  /** null where XTuner's entry has no SYSTEM (minicpm): a system text cannot be used with it. */
  readonly SYSTEM: string | null;
  readonly INSTRUCTION: string;
  readonly SUFFIX: string;
  readonly SUFFIX_AS_EOS: boolean;
  readonly SEP: string;
  readonly STOP_WORDS: readonly string[];
}

type Entry = Partial<Omit<PromptTemplate, 'name' | 'INSTRUCTION'>> & { INSTRUCTION: string };

const VICUNA_SYSTEM =
  'A chat between a curious user and an artificial intelligence assistant. The assistant gives ' +
  "helpful, detailed, and polite answers to the user's questions. {system}\n ";
const DEEPSEEK_CODER_SYSTEM =
  'You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by ' +
  'DeepSeekCompany, and you only answer questions related to computer science. For politically ' +
  'sensitive questions, security and privacy issues, and other non-computer science questions, ' +
  'you will refuse to answer. {system}\n';
const CHATML_SYSTEM = '<|im_start|>system\n{system}<|im_end|>\n';
const CHATML_INSTRUCTION = '<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n';

// Keys XTuner leaves out take its defaults: SUFFIX '', SUFFIX_AS_EOS false, SEP '', STOP_WORDS [].
const ENTRIES = {
  default: { SYSTEM: '<|System|>:{system}\n', INSTRUCTION: '<|User|>:{input}\n<|Bot|>:', SEP: '\n' },
  zephyr: { SYSTEM: '<|system|>\n{system}\n', INSTRUCTION: '<|user|>\n{input}\n<|assistant|>\n', SEP: '\n' },
  internlm_chat: {
    SYSTEM: '<|System|>:{system}\n',
    INSTRUCTION: '<|User|>:{input}<eoh>\n<|Bot|>:',
    SUFFIX: '<eoa>',
    SUFFIX_AS_EOS: true,
    SEP: '\n',
    STOP_WORDS: ['<eoa>'],
  },
  internlm2_chat: {
    SYSTEM: CHATML_SYSTEM,
    INSTRUCTION: CHATML_INSTRUCTION,
    SUFFIX: '<|im_end|>',
    SUFFIX_AS_EOS: true,
    SEP: '\n',
    STOP_WORDS: ['<|im_end|>'],
  },
  moss_sft: { SYSTEM: '{system}\n', INSTRUCTION: '<|Human|>: {input}<eoh>\n', SEP: '\n', STOP_WORDS: ['<eoc>', '<eom>'] },
  llama2_chat: {
    SYSTEM:
      '[INST] <<SYS>>\n You are a helpful, respectful and honest assistant. Always answer as helpfully ' +
      'as possible, while being safe. Your answers should not include any harmful, unethical, racist, ' +
      'sexist, toxic, dangerous, or illegal content. Please ensure that your responses are socially ' +
      'unbiased and positive in nature.\n{system}\n<</SYS>>\n [/INST] ',
    INSTRUCTION: '[INST] {input} [/INST]',
    SEP: '\n',
  },
  code_llama_chat: { SYSTEM: '{system}\n', INSTRUCTION: '[INST] {input} [/INST]' },
  chatglm2: { SYSTEM: '{system}\n', INSTRUCTION: '[Round {round}]\n\n问：{input}\n\n答：', SEP: '\n\n' },
  chatglm3: { SYSTEM: '<|system|>\n{system}', INSTRUCTION: '<|user|>\n{input}<|assistant|>\n', SEP: '\n' },
  qwen_chat: {
    SYSTEM: CHATML_SYSTEM,
    INSTRUCTION: CHATML_INSTRUCTION,
    SUFFIX: '<|im_end|>',
    SUFFIX_AS_EOS: true,
    SEP: '\n',
    STOP_WORDS: ['<|im_end|>', '<|endoftext|>'],
  },
  baichuan_chat: { SYSTEM: '{system}\n', INSTRUCTION: '<reserved_102>{input}<reserved_103>', SEP: '\n' },
  baichuan2_chat: { SYSTEM: '{system}\n', INSTRUCTION: '<reserved_106>{input}<reserved_107>', SEP: '\n' },
  wizardlm: { SYSTEM: VICUNA_SYSTEM, INSTRUCTION: 'USER: {input} ASSISTANT:', SEP: '\n' },
  wizardcoder: {
    SYSTEM:
      'Below is an instruction that describes a task. Write a response that appropriately completes ' +
      'the request.\n\n{system}\n ',
    INSTRUCTION: '### Instruction:\n{input}\n\n### Response:',
    SEP: '\n\n',
  },
  vicuna: { SYSTEM: VICUNA_SYSTEM, INSTRUCTION: 'USER: {input} ASSISTANT:', SEP: '\n' },
  deepseek_coder: { SYSTEM: DEEPSEEK_CODER_SYSTEM, INSTRUCTION: '### Instruction:\n{input}\n### Response:\n', SEP: '\n' },
  // XTuner keeps this older spelling of deepseek_coder (marked for deprecation there)
  deepseekcoder: { SYSTEM: DEEPSEEK_CODER_SYSTEM, INSTRUCTION: '### Instruction:\n{input}\n### Response:\n', SEP: '\n' },
  deepseek_moe: { SYSTEM: '[INST] {system} [/INST]\n', INSTRUCTION: '[INST] {input} [/INST]', SEP: '\n' },
  deepseek_v2: {
    SYSTEM: '{system}\n\n',
    INSTRUCTION: 'User: {input}\n\nAssistant: ',
    SUFFIX: '<｜end▁of▁sentence｜>',
    SUFFIX_AS_EOS: true,
    STOP_WORDS: ['<｜end▁of▁sentence｜>'],
  },
  mistral: { SYSTEM: '[INST] {system} [/INST]\n', INSTRUCTION: '[INST] {input} [/INST]', SEP: '\n' },
  mixtral: { SYSTEM: '[INST] {system} [/INST]\n', INSTRUCTION: '[INST] {input} [/INST]', SEP: '\n' },
  minicpm: { INSTRUCTION: '<用户> {input} <AI>', SEP: '\n' },
  minicpm3: {
    SYSTEM: CHATML_SYSTEM,
    INSTRUCTION: CHATML_INSTRUCTION,
    SUFFIX: '<|im_end|>',
    SUFFIX_AS_EOS: true,
    SEP: '\n',
    STOP_WORDS: ['<|im_end|>', '<|endoftext|>'],
  },
  gemma: {
    SYSTEM: '<start_of_turn>system\n{system}<end_of_turn>\n',
    INSTRUCTION: '<start_of_turn>user\n{input}<end_of_turn>\n<start_of_turn>model\n',
    SUFFIX: '<end_of_turn>',
    SUFFIX_AS_EOS: false,
    SEP: '\n',
    STOP_WORDS: ['<end_of_turn>'],
  },
  cohere_chat: {
    SYSTEM: '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{system}<|END_OF_TURN_TOKEN|>',
    INSTRUCTION:
      '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{input}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>',
    SUFFIX: '<|END_OF_TURN_TOKEN|>',
    SUFFIX_AS_EOS: true,
    STOP_WORDS: ['<|END_OF_TURN_TOKEN|>'],
  },
  llama3_chat: {
    SYSTEM: '<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>',
    INSTRUCTION:
      '<|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    SUFFIX: '<|eot_id|>',
    SUFFIX_AS_EOS: true,
    STOP_WORDS: ['<|eot_id|>'],
  },
  phi3_chat: {
    SYSTEM: '<|system|>\n{system}<|end|>\n',
    INSTRUCTION: '<|user|>\n{input}<|end|>\n<|assistant|>\n',
    SUFFIX: '<|end|>',
    SUFFIX_AS_EOS: true,
    SEP: '\n',
    STOP_WORDS: ['<|end|>'],
  },
} satisfies Record<string, Entry>;

export type PromptTemplateName = keyof typeof ENTRIES;

export const PROMPT_TEMPLATE: Readonly<Record<PromptTemplateName, PromptTemplate>> = Object.freeze(
  Object.fromEntries(
    Object.entries(ENTRIES).map(([name, e]: [string, Entry]) => [
      name,
      Object.freeze({
        name,
        SYSTEM: e.SYSTEM ?? null,
        INSTRUCTION: e.INSTRUCTION,
        SUFFIX: e.SUFFIX ?? '',
        SUFFIX_AS_EOS: e.SUFFIX_AS_EOS ?? false,
        SEP: e.SEP ?? '',
        STOP_WORDS: Object.freeze([...(e.STOP_WORDS ?? [])]),
      }),
    ]),
  ) as Record<PromptTemplateName, PromptTemplate>,
);

/** XTuner's SYSTEM_TEMPLATE presets (system texts for configs' SYSTEM). */
export const SYSTEM_TEMPLATE = Object.freeze({
  moss_sft:
    'You are an AI assistant whose name is {bot_name}.\n' +
    'Capabilities and tools that {bot_name} can possess.\n' +
    '- Inner thoughts: enabled.\n' +
    '- Web search: enabled. API: Search(query)\n' +
    '- Calculator: enabled. API: Calculate(expression)\n' +
    '- Equation solver: enabled. API: Solve(equation)\n' +
    '- Text-to-image: disabled.\n' +
    '- Image edition: disabled.\n' +
    '- Text-to-speech: disabled.\n',
  alpaca: 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n',
  arxiv_gentile:
    'If you are an expert in writing papers, please generate a good paper title for this paper based on ' +
    "other authors' descriptions of their abstracts.\n",
  colorist:
    'You are a professional color designer. Please provide the corresponding colors based on the ' +
    'description of Human.\n',
  coder: 'You are a professional programer. Please provide the corresponding code based on the description of Human.\n',
  lawyer: '你现在是一名专业的中国律师，请根据用户的问题给出准确、有理有据的回复。\n',
  medical: '如果你是一名医生，请根据患者的描述回答医学问题。\n',
  sql: 'If you are an expert in SQL, please generate a good SQL Query for Question based on the CREATE TABLE statement.\n',
});

export type SystemTemplateName = keyof typeof SYSTEM_TEMPLATE;

/** Python's str.format for the placeholders templates use; the values themselves are not re-scanned. */
export function formatTemplate(
  text: string,
  values: { system?: string; input?: string; round?: number; bot_name?: string },
): string {
  return text.replace(/\{(system|input|round|bot_name)\}/g, (whole, key: keyof typeof values) => {
    const v = values[key];
    return v === undefined ? whole : String(v);
  });
}

export function isPromptTemplateName(name: string): name is PromptTemplateName {
  return Object.hasOwn(PROMPT_TEMPLATE, name);
}

/** A registry template by name; 'hf' for the tokenizer's chat_template. Unknown names throw. */
export function getPromptTemplate(name: string): PromptTemplate | 'hf' {
  if (name === 'hf') return 'hf';
  if (isPromptTemplateName(name)) return PROMPT_TEMPLATE[name];
  const names = [...Object.keys(PROMPT_TEMPLATE), 'hf'];
  throw new XtunerError(`unknown prompt_template "${name}"${didYouMean(name, names)}`, {
    hint: `known templates: ${names.join(', ')}`,
  });
}

/**
 * The prompt of one chat turn, as XTuner's chat tool builds it: SYSTEM (first turn only, when a
 * system text is given) + INSTRUCTION with {input} and {round}.
 */
export function buildPrompt(
  template: PromptTemplate,
  turn: { input: string; round: number; system?: string; botName?: string },
): string {
  let text = '';
  if (turn.round === 1 && turn.system) {
    if (template.SYSTEM === null) {
      throw new XtunerError(`prompt_template '${template.name}' has no SYSTEM, so a system text cannot be used with it`);
    }
    text += formatTemplate(template.SYSTEM, { system: turn.system, round: turn.round, bot_name: turn.botName });
  }
  return text + formatTemplate(template.INSTRUCTION, { input: turn.input, round: turn.round, bot_name: turn.botName });
}
