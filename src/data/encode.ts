// XTuner's template_map_fn and encode_fn (xtuner/dataset/map_fns/template_map_fn.py,
// xtuner/dataset/utils.py): a conversation becomes input ids and labels.
//
//   per turn: [BOS if the previous turn ended with EOS] SYSTEM+INSTRUCTION (-100)
//             output+SUFFIX (supervised) [EOS (supervised) unless SUFFIX_AS_EOS] SEP (-100)
//
// Each piece is tokenized on its own, without special tokens, as XTuner does; the sequence is then
// cut to max_length.

import { XtunerError } from '../errors.ts';
import { formatTemplate, type PromptTemplate } from '../tokenizer/templates.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { IMAGE_TOKEN, RecordError, type Turn } from './formats.ts';

export const IGNORE_INDEX = -100;
/** Stands for the image features in LLaVA inputs (XTuner's IMAGE_TOKEN_INDEX). */
export const IMAGE_TOKEN_INDEX = -200;

export interface EncodedSample {
  inputIds: Int32Array; // [T]
  labels: Int32Array; // [T], IGNORE_INDEX where not supervised
}

/** A turn after the prompt template (XTuner's conversation after template_map_fn). */
export interface TemplatedTurn {
  input: string;
  output: string;
  outputWithLoss: boolean;
  needEosToken: boolean;
  sep: string;
}

/** template_map_fn; `null` (pre-training) leaves the text as it is and ends each turn with EOS. */
export function applyTemplate(turns: readonly Turn[], template: PromptTemplate | null): TemplatedTurn[] {
  return turns.map((turn, i) => {
    const outputWithLoss = turn.outputWithLoss ?? true;
    if (template === null) {
      return { input: turn.input, output: turn.output, outputWithLoss, needEosToken: turn.needEosToken ?? true, sep: '' };
    }
    let input = formatTemplate(template.INSTRUCTION, { input: turn.input, round: i + 1 });
    if (turn.system) {
      if (template.SYSTEM === null) {
        throw new RecordError('system', `prompt_template '${template.name}' has no SYSTEM, so turns cannot have a system text`);
      }
      input = formatTemplate(template.SYSTEM, { system: turn.system }) + input;
    }
    return {
      input,
      output: turn.output + template.SUFFIX,
      outputWithLoss,
      needEosToken: !template.SUFFIX_AS_EOS,
      sep: template.SEP,
    };
  });
}

const QWEN_CLASSES = ['QWenTokenizer', 'QWen2Tokenizer', 'Qwen2Tokenizer', 'Qwen2TokenizerFast'];

/**
 * BOS and EOS as XTuner's get_bos_eos_token_ids chooses them: Qwen tokenizers get no BOS, ChatGLM
 * two fixed ids, any other tokenizer its bos_token (whatever add_bos_token says).
 */
export function xtunerBosEos(tok: Pick<Tokenizer, 'tokenizerClass' | 'bosTokenId' | 'eosTokenId'>): {
  bos: number[];
  eos: number[] | null;
} {
  const cls = tok.tokenizerClass ?? '';
  let bos: number[];
  if (QWEN_CLASSES.includes(cls)) bos = [];
  else if (cls === 'ChatGLMTokenizer') bos = [64790, 64792];
  else bos = tok.bosTokenId === null ? [] : [tok.bosTokenId];
  return { bos, eos: tok.eosTokenId === null ? null : [tok.eosTokenId] };
}

export interface EncodeTurnsOptions {
  maxLength: number;
  /** Replace the one '<image>' of an input by IMAGE_TOKEN_INDEX (LLaVA training). */
  withImageToken?: boolean;
}

export interface EncodeResult {
  sample: EncodedSample;
  /** Length before the cut to max_length. */
  fullLength: number;
}

/** Tokenizes a piece of text without special tokens. */
type EncodeText = (text: string) => readonly number[];

function encodeInput(input: string, encode: EncodeText, withImageToken: boolean): readonly number[] {
  if (!withImageToken || !input.includes(IMAGE_TOKEN)) return encode(input);
  const chunks = input.split(IMAGE_TOKEN);
  if (chunks.length !== 2) throw new RecordError('input', `expected one ${IMAGE_TOKEN} per input, found ${chunks.length - 1}`);
  return [...encode(chunks[0]!), IMAGE_TOKEN_INDEX, ...encode(chunks[1]!)];
}

/** encode_fn over templated turns. `encode` tokenizes without special tokens. */
export function encodeTurns(
  turns: readonly TemplatedTurn[],
  encode: EncodeText,
  specials: { bos: readonly number[]; eos: readonly number[] | null },
  options: EncodeTurnsOptions,
): EncodeResult {
  const ids: number[] = [];
  const labels: number[] = [];
  const push = (tokens: readonly number[], supervised: boolean): void => {
    for (const t of tokens) {
      ids.push(t);
      labels.push(supervised ? t : IGNORE_INDEX);
    }
  };
  let nextNeedsBos = true;
  for (const turn of turns) {
    if (nextNeedsBos) push(specials.bos, false);
    push(encodeInput(turn.input, encode, options.withImageToken ?? false), false);
    push(encode(turn.output), turn.outputWithLoss);
    if (turn.needEosToken) {
      if (specials.eos === null) {
        throw new XtunerError('the tokenizer has no eos_token, which this prompt template needs after each answer', {
          hint: 'set eos_token in the model folder’s tokenizer_config.json',
        });
      }
      push(specials.eos, turn.outputWithLoss);
      nextNeedsBos = true;
    } else nextNeedsBos = false;
    if (turn.sep !== '') push(encode(turn.sep), false);
  }
  const fullLength = ids.length;
  const n = Math.min(fullLength, options.maxLength);
  return {
    sample: { inputIds: Int32Array.from(ids.slice(0, n)), labels: Int32Array.from(labels.slice(0, n)) },
    fullLength,
  };
}

export function hasSupervisedToken(labels: Int32Array): boolean {
  for (let i = 0; i < labels.length; i++) if (labels[i]! >= 0) return true;
  return false;
}
