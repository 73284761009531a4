// Dataset formats: XTuner's dataset map functions (xtuner/dataset/map_fns/dataset_map_fns/*), each
// turning one record of its format into XTuner's `conversation`: a list of turns
// { system?, input, output }. Validation is strict and names the field at fault (RecordError);
// where XTuner would crash with a KeyError or NotImplementedError, we say what was expected.

import { XtunerError } from '../errors.ts';

export const DATASET_FORMATS = [
  'alpaca',
  'alpaca_zh',
  'openai',
  'conversation',
  'sharegpt',
  'llava',
  'oasst1',
  'pretrain',
] as const;

export type DatasetFormat = (typeof DATASET_FORMATS)[number];

/** One turn of XTuner's `conversation` (before the prompt template is applied). */
export interface Turn {
  system?: string;
  input: string;
  output: string;
  /** openai's per-message `"loss": false` (XTuner's output_with_loss); default true. */
  outputWithLoss?: boolean;
  /** Set by formats that decide EOS themselves (pretrain); otherwise the template decides. */
  needEosToken?: boolean;
}

/** A record that does not fit its format; `field` is a path into the record ('messages[2].role'). */
export class RecordError extends Error {
  constructor(
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'RecordError';
  }
}

export const IMAGE_TOKEN = '<image>';

type Obj = Record<string, unknown>;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

function asObject(v: unknown, field: string | undefined): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new RecordError(field, `expected an object, got ${describe(v)}`);
  }
  return v as Obj;
}

function requireString(o: Obj, key: string, prefix = ''): string {
  const v = o[key];
  if (v === undefined) throw new RecordError(prefix + key, 'missing (a string is required)');
  if (typeof v !== 'string') throw new RecordError(prefix + key, `expected a string, got ${describe(v)}`);
  return v;
}

/** A string, or '' where absent or null. */
function optionalString(o: Obj, key: string, prefix = ''): string {
  const v = o[key];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new RecordError(prefix + key, `expected a string, got ${describe(v)}`);
  return v;
}

function requireArray(o: Obj, key: string): unknown[] {
  const v = o[key];
  if (v === undefined) throw new RecordError(key, 'missing (an array is required)');
  if (!Array.isArray(v)) throw new RecordError(key, `expected an array, got ${describe(v)}`);
  return v;
}

function alpaca(r: Obj): Turn[] {
  const instruction = requireString(r, 'instruction');
  const input = optionalString(r, 'input');
  const output = requireString(r, 'output');
  if (output === '<nooutput>') return [];
  return [{ input: `${instruction}\n${input}`, output }];
}

function alpacaZh(r: Obj): Turn[] {
  const instruction = requireString(r, 'instruction_zh');
  const input = optionalString(r, 'input_zh');
  return [{ input: `${instruction}\n${input}`, output: requireString(r, 'output_zh') }];
}

function openai(r: Obj): Turn[] {
  const messages = requireArray(r, 'messages').map((m, i) => asObject(m, `messages[${i}]`));
  const turns: Turn[] = [];
  let system = '';
  let input = '';
  let start = 0;
  // a conversation opened by the assistant: XTuner skips those first messages
  while (start < messages.length && messages[start]!.role === 'assistant') start++;
  for (let i = start; i < messages.length; i++) {
    const m = messages[i]!;
    const role = requireString(m, 'role', `messages[${i}].`);
    const content = requireString(m, 'content', `messages[${i}].`);
    if (role === 'system') system = content;
    else if (role === 'user') input += content;
    else if (role === 'assistant') {
      // XTuner: str(msg.get('loss', 'True')).lower() == 'true'
      const loss = m.loss === undefined ? true : String(m.loss).toLowerCase() === 'true';
      turns.push({ system, input, output: content, outputWithLoss: loss });
      system = '';
      input = '';
    } else {
      throw new RecordError(`messages[${i}].role`, `unknown role '${role}' (expected system, user or assistant)`);
    }
  }
  return turns;
}

function conversation(r: Obj): Turn[] {
  return requireArray(r, 'conversation').map((t, i) => {
    const prefix = `conversation[${i}].`;
    const turn = asObject(t, `conversation[${i}]`);
    const out: Turn = { input: optionalString(turn, 'input', prefix), output: requireString(turn, 'output', prefix) };
    const system = optionalString(turn, 'system', prefix);
    if (system !== '') out.system = system;
    const withLoss = turn.output_with_loss;
    if (withLoss !== undefined) {
      if (typeof withLoss !== 'boolean') {
        throw new RecordError(prefix + 'output_with_loss', `expected true or false, got ${describe(withLoss)}`);
      }
      out.outputWithLoss = withLoss;
    }
    return out;
  });
}

/** sharegpt and llava: `conversations` of { from: 'human' | 'gpt', value } (llava_map_fn). */
function sharegpt(r: Obj, llava: boolean): Turn[] {
  const messages = requireArray(r, 'conversations').map((m, i) => asObject(m, `conversations[${i}]`));
  const turns: Turn[] = [];
  let input = '';
  let system = '';
  let start = 0;
  while (start < messages.length && messages[start]!.from === 'gpt') start++;
  for (let i = start; i < messages.length; i++) {
    const m = messages[i]!;
    const from = requireString(m, 'from', `conversations[${i}].`);
    let value = requireString(m, 'value', `conversations[${i}].`);
    if (from === 'human') {
      if (llava && value.includes(IMAGE_TOKEN)) {
        // LLaVA puts the image first, on its own line
        value = pyStrip(IMAGE_TOKEN + '\n' + pyStrip(value.replaceAll(IMAGE_TOKEN, '')));
      }
      input += value;
    } else if (from === 'gpt') {
      turns.push(system === '' ? { input, output: value } : { system, input, output: value });
      input = '';
      system = '';
    } else if (from === 'system' && !llava) system = value;
    else {
      const expected = llava ? 'human or gpt' : 'system, human or gpt';
      throw new RecordError(`conversations[${i}].from`, `unknown role '${from}' (expected ${expected})`);
    }
  }
  return turns;
}

/** oasst1 (timdettmers/openassistant-guanaco): '### Human: ... ### Assistant: ...' in `text`. */
function oasst1(r: Obj): Turn[] {
  const data: string[] = [];
  for (let sentence of pyStrip(requireString(r, 'text')).split('###')) {
    sentence = pyStrip(sentence);
    if (sentence.startsWith('Human:')) data.push(pyStrip(sentence.slice(6)));
    else if (sentence.startsWith('Assistant:')) data.push(pyStrip(sentence.slice(10)));
  }
  // a last human message without an answer carries no loss: XTuner drops it
  if (data.length % 2 === 1) data.pop();
  const turns: Turn[] = [];
  for (let i = 0; i < data.length; i += 2) turns.push({ input: data[i]!, output: data[i + 1]! });
  return turns;
}

/**
 * Raw text for incremental pre-training: the whole text supervised, EOS after each document (as
 * XTuner's custom pre-training format, { conversation: [{ input: '', output }] } without a template,
 * encodes it; its pretrain_map_fn for hub datasets leaves the EOS out).
 */
function pretrain(r: Obj): Turn[] {
  return [{ input: '', output: pyStrip(requireString(r, 'text')), needEosToken: true }];
}

/** XTuner's dataset map function for `format`, applied to one record. Throws RecordError. */
export function mapRecord(format: DatasetFormat, record: unknown): Turn[] {
  const r = asObject(record, undefined);
  switch (format) {
    case 'alpaca':
      return alpaca(r);
    case 'alpaca_zh':
      return alpacaZh(r);
    case 'openai':
      return openai(r);
    case 'conversation':
      return conversation(r);
    case 'sharegpt':
      return sharegpt(r, false);
    case 'llava':
      return sharegpt(r, true);
    case 'oasst1':
      return oasst1(r);
    case 'pretrain':
      return pretrain(r);
    default:
      format satisfies never;
      throw new XtunerError(`unknown dataset_format '${String(format)}' (known: ${DATASET_FORMATS.join(', ')})`);
  }
}

export function isDatasetFormat(name: string): name is DatasetFormat {
  return (DATASET_FORMATS as readonly string[]).includes(name);
}

/** Python's str.strip(): str.isspace() characters (U+001C-U+001F and U+0085 too; not U+FEFF, which JS trims), as XTuner's map functions strip. */
function pyStrip(s: string): string {
  return s.replace(/^[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g, '');
}
