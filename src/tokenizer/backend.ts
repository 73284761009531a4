// The small surface every tokenizer implementation offers to `Tokenizer` (tokenizer.ts): encode,
// decode and vocabulary lookups. Special-token policy (which ids are BOS/EOS/pad, chat templates)
// lives in Tokenizer, not here.

export interface TokenizerBackend {
  readonly kind: 'tokenizer.json' | 'sentencepiece';
  readonly vocabSize: number;
  /** Ids that decode(..., skipSpecialTokens = true) leaves out. */
  readonly specialIds: ReadonlySet<number>;
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: readonly number[], skipSpecialTokens: boolean): string;
  tokenToId(token: string): number | null;
  idToToken(id: number): string | null;
}
