// SentencePiece `tokenizer.model` through @sctg/sentencepiece-js (the C++ library compiled to
// WebAssembly: ids identical to Python's `sentencepiece`). Behaves like transformers' slow
// SentencePiece tokenizers (LlamaTokenizer, InternLM2Tokenizer): tokens declared in
// tokenizer_config.json's added_tokens_decoder are split out of the text first (InternLM2 maps
// '<|im_start|>' onto a piece of another name), the rest goes to SentencePiece; BOS/EOS are added
// per add_bos_token / add_eos_token.

import fs from 'node:fs';
import { SentencePieceProcessor } from '@sctg/sentencepiece-js';
import { addBosEos, type BosEosPostProcessing, type TokenizerBackend } from './backend.ts';
import type { DeclaredToken } from './folder-meta.ts';
import { PieceType, parseSentencePieceModel, type SentencePieceModel } from './sentencepiece-model.ts';

/** What encode(text, addSpecialTokens = true) adds; set by the caller once ids are resolved. */
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class SentencePieceBackend implements TokenizerBackend {
  readonly kind = 'sentencepiece';
  readonly vocabSize: number;
  readonly specialIds: ReadonlySet<number>;
  private readonly pieceToId = new Map<string, number>();
  private readonly idToContent = new Map<number, string>(); // declared tokens by id
  private readonly splitter: RegExp | null;
  private post: BosEosPostProcessing = { bosId: null, eosId: null, addBosToken: false, addEosToken: false };

  private constructor(
    private readonly sp: SentencePieceProcessor,
    readonly model: SentencePieceModel,
    declaredTokens: readonly DeclaredToken[],
  ) {
    model.pieces.forEach((p, id) => {
      if (!this.pieceToId.has(p)) this.pieceToId.set(p, id);
    });
    const special = new Set<number>();
    model.types.forEach((t, id) => {
      if (t === PieceType.CONTROL || t === PieceType.UNKNOWN) special.add(id);
    });
    let maxId = model.pieces.length - 1;
    for (const t of declaredTokens) {
      this.idToContent.set(t.id, t.content);
      this.pieceToId.set(t.content, t.id);
      if (t.special) special.add(t.id);
      maxId = Math.max(maxId, t.id);
    }
    this.specialIds = special;
    this.vocabSize = maxId + 1;
    // longest first, so that '<|im_start|>' wins over any token that is its prefix
    const contents = [...new Set(declaredTokens.map((t) => t.content))].sort((a, b) => b.length - a.length);
    this.splitter = contents.length > 0 ? new RegExp(`(${contents.map(escapeRegExp).join('|')})`) : null;
  }

  /**
   * `namedSpecial`: the special tokens tokenizer_config.json names (bos, eos, unk, pad, additional);
   * those the model has are split out of the text like declared tokens, as transformers adds every
   * special token to its no-split trie (older folders have no added_tokens_decoder).
   */
  static async load(file: string, declaredTokens: readonly DeclaredToken[], namedSpecial: readonly string[] = []): Promise<SentencePieceBackend> {
    const model = parseSentencePieceModel(fs.readFileSync(file), file);
    const sp = new SentencePieceProcessor();
    await sp.load(file);
    const declared = new Set(declaredTokens.map((t) => t.content));
    const named = [...new Set(namedSpecial)].flatMap((content) => {
      const id = model.pieces.indexOf(content);
      return id < 0 || declared.has(content) ? [] : [{ id, content, special: true }];
    });
    return new SentencePieceBackend(sp, model, [...declaredTokens, ...named]);
  }

  setPostProcessing(post: BosEosPostProcessing): void {
    this.post = { ...post };
  }

  encode(input: string, addSpecialTokens: boolean): number[] {
    // a lone surrogate as U+FFFD (as the tokenizer.json path reads it): the WebAssembly string bridge
    // would pair it with the next code unit and lose that character
    const text = input.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
    const ids: number[] = [];
    if (this.splitter === null) ids.push(...this.sp.encodeIds(text));
    else {
      // split() with one capture group: odd indices are the declared tokens
      text.split(this.splitter).forEach((part, i) => {
        if (i % 2 === 1) ids.push(this.pieceToId.get(part)!);
        else if (part !== '') ids.push(...this.sp.encodeIds(part));
      });
    }
    return addSpecialTokens ? addBosEos(ids, this.post) : ids;
  }

  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    let out = '';
    let run: number[] = [];
    const flush = (): void => {
      if (run.length > 0) out += this.sp.decodeIds(Int32Array.from(run) as unknown as Int32Array);
      run = [];
    };
    for (const id of ids) {
      const declared = this.idToContent.get(id);
      if (this.specialIds.has(id)) {
        if (skipSpecialTokens) continue;
        flush();
        out += declared ?? this.model.pieces[id] ?? '';
      } else if (declared !== undefined) {
        flush();
        out += declared;
      } else if (id >= 0 && id < this.model.pieces.length) run.push(id);
      // else an id the model has and the tokenizer has not (vocabularies padded to a round size, whose
      // rows a sampler can still pick): decoded as nothing, as HF's fast tokenizers do
    }
    flush();
    return out;
  }

  tokenToId(token: string): number | null {
    return this.pieceToId.get(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.idToContent.get(id) ?? this.model.pieces[id] ?? null;
  }
}
