// prompt_template 'hf': a conversation rendered by the tokenizer's own chat_template, with the
// assistant answers (and the end-of-turn token right after each) supervised and the rest masked.
// The whole conversation is rendered once; each message's content is then found in the rendering
// in order, so templates that rewrite earlier turns (Qwen3 drops old reasoning) still work.

import type { Tokenizer, ChatMessage } from '../tokenizer/tokenizer.ts';
import { IGNORE_INDEX, type EncodeResult } from './encode.ts';
import { RecordError, type Turn } from './formats.ts';

export function turnsToMessages(turns: readonly Turn[]): (ChatMessage & { loss: boolean })[] {
  const messages: (ChatMessage & { loss: boolean })[] = [];
  for (const t of turns) {
    if (t.system) messages.push({ role: 'system', content: t.system, loss: false });
    messages.push({ role: 'user', content: t.input, loss: false });
    messages.push({ role: 'assistant', content: t.output, loss: t.outputWithLoss ?? true });
  }
  return messages;
}

/** Text spans of the rendering, in order, each supervised or not. */
function supervisedSpans(
  text: string,
  messages: readonly (ChatMessage & { loss: boolean })[],
  endOfTurn: string | null,
): { text: string; supervised: boolean }[] {
  const spans: { text: string; supervised: boolean }[] = [];
  let cursor = 0;
  messages.forEach((m, i) => {
    if (m.content === '') return;
    const at = text.indexOf(m.content, cursor);
    if (at < 0) {
      if (m.role !== 'assistant') return; // templates may rewrite system/user text; only answers must be found
      throw new RecordError(
        `messages[${i}].content`,
        'this answer does not appear verbatim in the chat_template rendering, so its tokens cannot be found',
      );
    }
    let end = at + m.content.length;
    if (m.role === 'assistant') {
      if (endOfTurn !== null && text.startsWith(endOfTurn, end)) end += endOfTurn.length;
      spans.push({ text: text.slice(cursor, at), supervised: false });
      spans.push({ text: text.slice(at, end), supervised: m.loss });
    } else spans.push({ text: text.slice(cursor, end), supervised: false });
    cursor = end;
  });
  spans.push({ text: text.slice(cursor), supervised: false });
  return spans.filter((s) => s.text !== '');
}

export function encodeWithChatTemplate(turns: readonly Turn[], tok: Tokenizer, maxLength: number): EncodeResult {
  const messages = turnsToMessages(turns);
  const text = tok.applyChatTemplate(messages, { tokenize: false });
  const ids: number[] = [];
  const labels: number[] = [];
  for (const span of supervisedSpans(text, messages, tok.eosToken)) {
    for (const t of tok.encode(span.text, { addSpecialTokens: false })) {
      ids.push(t);
      labels.push(span.supervised ? t : IGNORE_INDEX);
    }
  }
  const n = Math.min(ids.length, maxLength);
  return {
    sample: { inputIds: Int32Array.from(ids.slice(0, n)), labels: Int32Array.from(labels.slice(0, n)) },
    fullLength: ids.length,
  };
}
