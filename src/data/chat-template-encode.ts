// prompt_template 'hf': a conversation rendered by the tokenizer's own chat_template and tokenized
// whole (the ids apply_chat_template gives at inference), with each assistant answer and the
// end-of-turn marker right after it supervised and the rest masked.
//
// Where an answer's turn starts is found by rendering: the conversation up to it with the
// generation prompt must be a prefix of the whole rendering (true of templates that rewrite earlier
// turns too: Qwen3 drops the reasoning of answers before the last question, in both renderings), and
// the turn runs to the template's end-of-turn marker (found by rendering a probe answer:
// `<|im_end|>`, `</s>`, `<|eot_id|>`, whatever the template writes after an answer). The answer's
// text is only looked for at the end of its own turn (to leave what the template writes before it
// masked), so an answer that also occurs in the template's text ("a", "assistant") is labelled
// where it is; an answer the template rewrote is supervised as rendered.

import type { Tokenizer, ChatMessage } from '../tokenizer/tokenizer.ts';
import { IGNORE_INDEX, type EncodeResult } from './encode.ts';
import { RecordError, type Turn } from './formats.ts';

type LossMessage = ChatMessage & { loss: boolean };

export function turnsToMessages(turns: readonly Turn[]): LossMessage[] {
  const messages: LossMessage[] = [];
  for (const t of turns) {
    if (t.system) messages.push({ role: 'system', content: t.system, loss: false });
    messages.push({ role: 'user', content: t.input, loss: false });
    messages.push({ role: 'assistant', content: t.output, loss: t.outputWithLoss ?? true });
  }
  return messages;
}

const PROBE = 'xtuner-ts probe answer';

const markers = new WeakMap<Tokenizer, string>();

/** What the template writes right after an answer, trailing whitespace left out ('' where nothing); once per tokenizer. */
function endOfTurnMarker(tok: Tokenizer): string {
  let marker = markers.get(tok);
  if (marker === undefined) {
    const rendered = tok.applyChatTemplate([{ role: 'user', content: 'q' }, { role: 'assistant', content: PROBE }], { tokenize: false });
    const at = rendered.lastIndexOf(PROBE);
    marker = at < 0 ? '' : rendered.slice(at + PROBE.length).trimEnd();
    markers.set(tok, marker);
  }
  return marker;
}

/** [start, end) character ranges of the answers in `text`, each with whether it is supervised. */
function answerRanges(text: string, messages: readonly LossMessage[], tok: Tokenizer): { start: number; end: number; supervised: boolean }[] {
  const marker = endOfTurnMarker(tok);
  const ranges: { start: number; end: number; supervised: boolean }[] = [];
  let cursor = 0;
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = tok.applyChatTemplate(messages.slice(0, i), { tokenize: false, addGenerationPrompt: true });
    if (!text.startsWith(before) || before.length < cursor) {
      throw new RecordError(`messages[${i}]`, 'the chat_template renders the conversation before this answer differently when the answer follows, so the answer cannot be located');
    }
    let start = before.length;
    let contentEnd = marker === '' ? -1 : text.indexOf(marker, start);
    let end = contentEnd + marker.length;
    if (contentEnd < 0) {
      // no marker: the answer runs to where the conversation through it ends
      const through = tok.applyChatTemplate(messages.slice(0, i + 1), { tokenize: false });
      if (!text.startsWith(through)) throw new RecordError(`messages[${i}].content`, 'cannot find where this answer ends in the chat_template rendering');
      contentEnd = end = through.trimEnd().length;
    }
    // what the template writes before the answer's own text (Qwen3's empty <think></think>) stays masked
    if (m.content !== '' && text.slice(start, contentEnd).endsWith(m.content)) start = contentEnd - m.content.length;
    ranges.push({ start, end, supervised: m.loss });
    cursor = end;
  });
  return ranges;
}

/** How many leading tokens of `ids` lie wholly before character `at` of `text` (a token across it counts after). */
function tokensBefore(text: string, at: number, ids: readonly number[], tok: Tokenizer): number {
  const prefix = tok.encode(text.slice(0, at), { addSpecialTokens: false });
  let k = 0;
  while (k < prefix.length && k < ids.length && prefix[k] === ids[k]) k++;
  return k;
}

export function encodeWithChatTemplate(turns: readonly Turn[], tok: Tokenizer, maxLength: number): EncodeResult {
  const messages = turnsToMessages(turns);
  const text = tok.applyChatTemplate(messages, { tokenize: false });
  const ids = tok.encode(text, { addSpecialTokens: false });
  const labels = new Array<number>(ids.length).fill(IGNORE_INDEX);
  for (const r of answerRanges(text, messages, tok)) {
    if (!r.supervised) continue;
    const end = tokensBefore(text, r.end, ids, tok);
    for (let k = tokensBefore(text, r.start, ids, tok); k < end; k++) labels[k] = ids[k]!;
  }
  const n = Math.min(ids.length, maxLength);
  return {
    sample: { inputIds: Int32Array.from(ids.slice(0, n)), labels: Int32Array.from(labels.slice(0, n)) },
    fullLength: ids.length,
  };
}
