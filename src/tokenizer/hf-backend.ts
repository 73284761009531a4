// tokenizer.json through @huggingface/tokenizers (normalizer, pre-tokenizer, BPE/Unigram/WordPiece
// model, post-processor and decoder exactly as the file declares them; ids match Python
// `tokenizers`, see test/tokenizer/reference.test.ts).

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { XtunerError } from '../errors.ts';
import { addBosEos, type BosEosPostProcessing, type TokenizerBackend } from './backend.ts';
import { readJsonFile } from './folder-meta.ts';

export class HfJsonBackend implements TokenizerBackend {
  readonly kind = 'tokenizer.json';
  readonly vocabSize: number;
  readonly specialIds: ReadonlySet<number>;
  private readonly tok: HfTokenizer;
  /** transformers' default since 4.45 is false (the library's is true); Python `tokenizers` never cleans up. */
  private readonly cleanUp: boolean;
  private post: BosEosPostProcessing | null = null;

  constructor(file: string, tokenizerConfig: Record<string, unknown>) {
    const json = readJsonFile(file);
    try {
      this.tok = new HfTokenizer(json as object, tokenizerConfig);
    } catch (e) {
      throw new XtunerError(`${file}: cannot build a tokenizer from it (${(e as Error).message})`);
    }
    this.cleanUp = tokenizerConfig['clean_up_tokenization_spaces'] === true;
    const special = new Set<number>();
    let maxId = -1;
    for (const [id, added] of this.tok.get_added_tokens_decoder()) {
      if (added.special) special.add(id);
      maxId = Math.max(maxId, id);
    }
    this.specialIds = special;
    for (const id of this.tok.get_vocab(false).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
  }

  /**
   * Where set, BOS/EOS as tokenizer_config.json's add_bos_token / add_eos_token say instead of the
   * file's post-processor (transformers' LlamaTokenizerFast rebuilds it from them).
   */
  setPostProcessing(post: BosEosPostProcessing): void {
    this.post = { ...post };
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    if (this.post === null) return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    return addSpecialTokens ? addBosEos(ids, this.post) : ids;
  }

  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    // an id the vocabulary lacks (a model's padded rows) decodes as nothing, as in Python `tokenizers`
    const known = ids.filter((id) => this.tok.id_to_token(id) !== undefined);
    if (known.length === 0) return ''; // the library rejects an empty list
    return this.tok.decode(known, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: this.cleanUp });
  }

  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.tok.id_to_token(id) ?? null;
  }
}
