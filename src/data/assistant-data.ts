// The personal-assistant data of XTuner's tutorial ("XTuner 微调个人小助手认知"): N chat samples in
// which the model introduces itself as someone's assistant. A few paraphrased questions and answers
// make the model learn the identity, not one string. OpenAI `messages` format.

import { XtunerError } from '../errors.ts';

const QUESTIONS_ZH = [
  '请做一下自我介绍',
  '请介绍一下你自己',
  '你是谁？',
  '你好，你是谁？',
  '介绍一下你自己吧',
  '你叫什么名字？',
  '能介绍一下你自己吗？',
];
const QUESTIONS_EN = ['Who are you?', 'Please introduce yourself.', 'What is your name?'];

const answersZh = (name: string): string[] => [
  `我是${name}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦`,
  `你好！我是${name}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦`,
  `我是${name}的小助手哦，我的内在是上海AI实验室书生·浦语的1.8B大模型。`,
];
const answersEn = (name: string): string[] => [
  `I am ${name}'s assistant, built on InternLM (书生·浦语) 1.8B from Shanghai AI Laboratory.`,
  `Hi! I'm ${name}'s little assistant; inside, I am Shanghai AI Laboratory's InternLM 1.8B model.`,
];

export interface AssistantRecord {
  messages: [{ role: 'user'; content: string }, { role: 'assistant'; content: string }];
}

/** `n` samples; question i cycles through the questions, answers cycle more slowly. Deterministic. */
export function makeAssistantRecords(name: string, n: number): AssistantRecord[] {
  if (name.trim() === '') throw new XtunerError('--name must not be empty');
  if (!Number.isInteger(n) || n < 1) throw new XtunerError(`--n must be a positive integer, got ${n}`);
  const questions = [...QUESTIONS_ZH.map((q) => ({ q, en: false })), ...QUESTIONS_EN.map((q) => ({ q, en: true }))];
  const zh = answersZh(name);
  const en = answersEn(name);
  return Array.from({ length: n }, (_, i) => {
    const { q, en: isEn } = questions[i % questions.length]!;
    const answers = isEn ? en : zh;
    const a = answers[Math.floor(i / questions.length) % answers.length]!;
    return { messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] };
  });
}

/** The records as JSON Lines, or as one JSON array for a `.json` file name. */
export function recordsText(file: string, records: readonly unknown[]): string {
  return file.toLowerCase().endsWith('.json')
    ? JSON.stringify(records, null, 2) + '\n'
    : records.map((r) => JSON.stringify(r)).join('\n') + '\n';
}
