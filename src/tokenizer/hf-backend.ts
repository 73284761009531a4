// tokenizer.json through @huggingface/tokenizers (normalizer, pre-tokenizer, BPE/Unigram/WordPiece
// model, post-processor and decoder exactly as the file declares them; ids match Python
// `tokenizers`, see test/tokenizer/reference.test.ts).

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { XtunerError } from '../errors.ts';
import type { TokenizerBackend } from './backend.ts';
import { readJsonFile } from './folder-meta.ts';

export class HfJsonBackend implements TokenizerBackend {
  readonly kind = 'tokenizer.json';
  readonly vocabSize: number;
  readonly specialIds: ReadonlySet<number>;
  private readonly tok: HfTokenizer;

  constructor(file: string, tokenizerConfig: Record<string, unknown>) {
    const json = readJsonFile(file);
    try {
      this.tok = new HfTokenizer(json as object, tokenizerConfig);
    } catch (e) {
      throw new XtunerError(`${file}: cannot build a tokenizer from it (${(e as Error).message})`);
    }
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

  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    if (ids.length === 0) return ''; // the library rejects an empty list
    return this.tok.decode(ids as number[], { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.tok.id_to_token(id) ?? null;
  }
}
