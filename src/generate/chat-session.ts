// A conversation with a causal LM as XTuner's chat tool runs it: each turn is rendered with the
// prompt template (SYSTEM on the first turn when a system text is given, then INSTRUCTION), the
// token history grows turn by turn (the answer, its stop token, then the template's SEP), and
// generation stops at EOS or at any stop word (the template's STOP_WORDS plus the user's).
// Template 'hf' renders the whole conversation with the tokenizer's own chat_template instead.
// Streaming hands out text as it becomes final: never half of a UTF-8 character, never the start
// of what may turn out to be a stop word. Used by `xtuner chat` and the eval-chat hook.

import { DecodingState, type GenerateOptions } from './decode.ts';
import { buildPrompt, type PromptTemplate } from '../tokenizer/templates.ts';
import type { ChatMessage, Tokenizer } from '../tokenizer/tokenizer.ts';

/** What a session needs from a model (CausalLM provides it). */
export interface ChatModel {
  generate(promptIds: number[], opts: GenerateOptions): number[];
  /** eos id(s) of the model's config. */
  defaultStopIds?(): number[];
}

export interface GenerationSettings {
  maxNewTokens: number;
  /** 0: greedy. */
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
}

/** XTuner chat's defaults (xtuner/tools/chat.py). */
export const XTUNER_CHAT_DEFAULTS: GenerationSettings = {
  maxNewTokens: 2048,
  temperature: 0.1,
  topK: 40,
  topP: 0.75,
  repetitionPenalty: 1.0,
  seed: 0,
};

export interface ChatSessionOptions {
  tokenizer: Tokenizer;
  /** A registry template; 'hf': the tokenizer's chat_template; null sends the user's text as it is. */
  template: PromptTemplate | 'hf' | null;
  system?: string;
  /** Stop words besides the template's STOP_WORDS. */
  stopWords?: readonly string[];
  generation: GenerationSettings;
  /**
   * Keep the KV cache from turn to turn (until dispose()): a turn then runs only its new tokens,
   * not the whole conversation again. Default false: each turn's cache is freed with it.
   */
  keepCache?: boolean;
}

export interface TurnResult {
  /** The answer as shown: stop words and special tokens removed. */
  text: string;
  /** Ids generated this turn (including the stop token, if any). */
  ids: number[];
  /** Why generation ended. */
  stoppedBy: 'stop' | 'length';
}

export class ChatSession {
  private history: number[] = [];
  private messages: ChatMessage[] = [];
  private round = 0;
  readonly stopWords: string[];
  private readonly stopIds: number[];
  private readonly decoding: DecodingState | undefined;

  constructor(
    private readonly model: ChatModel,
    private readonly opts: ChatSessionOptions,
  ) {
    const tok = opts.tokenizer;
    const templateStops = opts.template && opts.template !== 'hf' ? opts.template.STOP_WORDS : [];
    this.stopWords = [...new Set([...(opts.stopWords ?? []), ...templateStops])].filter((w) => w.length > 0);
    const ids = new Set<number>(model.defaultStopIds?.() ?? []);
    if (tok.eosTokenId !== null) ids.add(tok.eosTokenId);
    // A stop word that is one token of the vocabulary stops on its id (no decoding needed).
    for (const w of this.stopWords) {
      const id = tok.tokenToId(w);
      if (id !== null) ids.add(id);
    }
    this.stopIds = [...ids];
    this.decoding = opts.keepCache ? new DecodingState() : undefined;
  }

  /** Frees the kept KV cache (keepCache). */
  dispose(): void {
    this.decoding?.dispose();
  }

  /** Forgets the conversation (XTuner chat's RESET). */
  reset(): void {
    this.history = [];
    this.messages = [];
    this.round = 0;
  }

  /** Total tokens of the conversation so far. */
  get historyLength(): number {
    return this.history.length;
  }

  /** The ids the model sees for `input` as the next turn (history included). */
  promptIds(input: string): number[] {
    const tok = this.opts.tokenizer;
    const t = this.opts.template;
    if (t === 'hf') {
      const system: ChatMessage[] = this.opts.system ? [{ role: 'system', content: this.opts.system }] : [];
      return tok.applyChatTemplate([...system, ...this.messages, { role: 'user', content: input }], { addGenerationPrompt: true });
    }
    const text = t ? buildPrompt(t, { input, round: this.round + 1, system: this.opts.system || undefined }) : input;
    // The first turn gets the tokenizer's BOS; later turns continue the history without one.
    return [...this.history, ...tok.encode(text, { addSpecialTokens: this.round === 0 })];
  }

  /** Answers one turn; `onText` receives the answer's text piece by piece as it is generated. */
  ask(input: string, onText?: (piece: string) => void): TurnResult {
    const tok = this.opts.tokenizer;
    const g = this.opts.generation;
    const prompt = this.promptIds(input);
    const stream = new StopWordStream(this.stopWords, (ids) => tok.decode(ids, { skipSpecialTokens: true }), onText);
    let stoppedOnWord = false;
    const ids = this.model.generate(prompt, {
      maxNewTokens: g.maxNewTokens,
      temperature: g.temperature,
      topK: g.topK,
      topP: g.topP,
      repetitionPenalty: g.repetitionPenalty,
      seed: g.seed,
      stopIds: this.stopIds,
      ...(this.decoding ? { state: this.decoding } : {}),
      onToken: (id) => {
        if (stream.push(id)) {
          stoppedOnWord = true;
          return false;
        }
        return undefined;
      },
    });
    const last = ids[ids.length - 1];
    const stoppedBy = stoppedOnWord || (last !== undefined && this.stopIds.includes(last)) ? 'stop' : 'length';
    const text = stream.finish();
    const t = this.opts.template;
    const sep = t && t !== 'hf' ? t.SEP : '';
    this.messages.push({ role: 'user', content: input }, { role: 'assistant', content: text });
    this.history = [...prompt, ...ids, ...(sep ? tok.encode(sep, { addSpecialTokens: false }) : [])];
    this.round++;
    return { text, ids, stoppedBy };
  }
}

/**
 * Turns a growing list of ids into text pieces. Text is held back while it could still be the
 * start of a stop word, or ends in an incomplete UTF-8 sequence (decoded as U+FFFD).
 * Decoding is incremental (as vLLM detokenizes): each id decodes a window from the last id whose
 * text was taken, twice (with and without the new ids) and the difference is the new text, so
 * a token costs the same at the end of a long answer as at its start (decoding the whole answer per
 * token made a 2000-token answer quadratic). Both decodes of a window start at the same id, so a
 * decoder's treatment of a leading space (SentencePiece) cancels out.
 */
export class StopWordStream {
  private readonly ids: number[] = [];
  /** Where the window decoded for each new id starts, and where its taken part ends. */
  private prefixOffset = 0;
  private readOffset = 0;
  private emitted = 0;
  private text = '';
  private stopped = false;
  private readonly holdBack: number;

  constructor(
    private readonly stopWords: readonly string[],
    private readonly decode: (ids: number[]) => string,
    private readonly onText?: (piece: string) => void,
  ) {
    this.holdBack = Math.max(0, ...stopWords.map((w) => w.length - 1));
  }

  /** Adds one id; returns true when the text now contains a stop word (generation should end). */
  push(id: number): boolean {
    if (this.stopped) return true;
    this.ids.push(id);
    this.take(false);
    const cut = this.stopCut();
    if (cut !== -1) {
      this.text = this.text.slice(0, cut);
      this.stopped = true;
      return true;
    }
    let upTo = this.text.length - this.holdBack;
    if (upTo > 0 && isHighSurrogate(this.text.charCodeAt(upTo - 1))) upTo--; // never half of a pair (an emoji)
    this.emit(upTo);
    return false;
  }

  /** Emits what is left and returns the whole answer. */
  finish(): string {
    if (!this.stopped) this.take(true);
    const cut = this.stopCut();
    if (cut !== -1) this.text = this.text.slice(0, cut);
    this.emit(this.text.length);
    return this.text;
  }

  /** Adds the text of the ids not yet taken, once it ends in a whole character (or `all`). */
  private take(all: boolean): void {
    const window = this.ids.slice(this.prefixOffset);
    const before = this.decode(window.slice(0, this.readOffset - this.prefixOffset));
    const after = this.decode(window);
    if (after.length > before.length && (all || !after.endsWith('\ufffd'))) {
      this.text += after.slice(before.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
    }
  }

  private stopCut(): number {
    let cut = -1;
    for (const w of this.stopWords) {
      const at = this.text.indexOf(w);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    return cut;
  }

  private emit(upto: number): void {
    if (upto > this.emitted) {
      this.onText?.(this.text.slice(this.emitted, upto));
      this.emitted = upto;
    }
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
