// One record in, one training sample out: the dataset format's map function, then the prompt
// template (XTuner's registry, the tokenizer's chat_template for 'hf', none for pre-training), then
// the encoding with labels and the cut to max_length. What happened is returned, for the counts.

import { getPromptTemplate, type PromptTemplate } from '../tokenizer/templates.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { encodeWithChatTemplate } from './chat-template-encode.ts';
import { applyTemplate, encodeTurns, hasSupervisedToken, xtunerBosEos, type EncodedSample, type EncodeResult } from './encode.ts';
import { mapRecord, type DatasetFormat, type Turn } from './formats.ts';

export interface SampleEncoderOptions {
  format: DatasetFormat;
  /** A PROMPT_TEMPLATE name, 'hf', or null (no template; always none for 'pretrain'). */
  promptTemplate: string | null;
  maxLength: number;
  withImageToken?: boolean;
}

export type EncodeOutcome =
  /** A sample; `fullLength` > sample length when it was cut to max_length. */
  | { kind: 'sample'; sample: EncodedSample; fullLength: number; truncated: boolean }
  /** The map function gave no turn (alpaca '<nooutput>', an empty conversation): dropped. */
  | { kind: 'empty' }
  /** No supervised token left (after the cut): dropped, as XTuner does. */
  | { kind: 'no-label'; fullLength: number };

export class SampleEncoder {
  readonly template: PromptTemplate | 'hf' | null;
  private readonly specials: ReturnType<typeof xtunerBosEos>;
  private readonly cache = new Map<string, readonly number[]>();

  constructor(
    readonly tokenizer: Tokenizer,
    readonly options: SampleEncoderOptions,
  ) {
    const name = options.format === 'pretrain' ? null : options.promptTemplate;
    this.template = name === null ? null : getPromptTemplate(name);
    this.specials = xtunerBosEos(tokenizer);
  }

  /** Tokenizes without special tokens; short repeated strings (SEP, SUFFIX) come from a cache. */
  private readonly encodeText = (text: string): readonly number[] => {
    if (text === '') return [];
    let ids = text.length <= 16 ? this.cache.get(text) : undefined;
    if (ids === undefined) {
      ids = this.tokenizer.encode(text, { addSpecialTokens: false });
      if (text.length <= 16 && this.cache.size < 4096) this.cache.set(text, ids);
    }
    return ids;
  };

  /** Throws RecordError when the record does not fit the format. */
  encodeRecord(record: unknown): EncodeOutcome {
    return this.encodeConversation(mapRecord(this.options.format, record));
  }

  encodeConversation(turns: readonly Turn[]): EncodeOutcome {
    if (turns.length === 0) return { kind: 'empty' };
    const { maxLength } = this.options;
    let result: EncodeResult;
    if (this.template === 'hf') result = encodeWithChatTemplate(turns, this.tokenizer, maxLength);
    else {
      const templated = applyTemplate(turns, this.template);
      result = encodeTurns(templated, this.encodeText, this.specials, {
        maxLength,
        withImageToken: this.options.withImageToken ?? false,
      });
    }
    const { sample, fullLength } = result;
    if (!hasSupervisedToken(sample.labels)) return { kind: 'no-label', fullLength };
    return { kind: 'sample', sample, fullLength, truncated: fullLength > sample.inputIds.length };
  }
}
