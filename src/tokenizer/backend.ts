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

/** BOS/EOS added by encode(text, addSpecialTokens = true), as transformers' Llama-style tokenizers decide it from add_bos_token / add_eos_token. */
export interface BosEosPostProcessing {
  bosId: number | null;
  eosId: number | null;
  addBosToken: boolean;
  addEosToken: boolean;
}

/** `ids` with BOS and EOS added as `post` says. */
export function addBosEos(ids: number[], post: BosEosPostProcessing): number[] {
  if (post.addBosToken && post.bosId !== null) ids.unshift(post.bosId);
  if (post.addEosToken && post.eosId !== null) ids.push(post.eosId);
  return ids;
}
