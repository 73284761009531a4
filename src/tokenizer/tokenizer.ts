// `loadTokenizer(dir)`: the tokenizer of a Hugging Face model folder, from `tokenizer.json`
// (preferred, as transformers prefers the fast tokenizer) or a SentencePiece `tokenizer.model`,
// with its special tokens and its chat_template. Prompt templates in XTuner's style are in
// templates.ts; the training-sample encoding is in src/data/encode.ts.

import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { XtunerError } from '../errors.ts';
import type { BosEosPostProcessing, TokenizerBackend } from './backend.ts';
import { readTokenizerFolderMeta, type TokenizerFolderMeta } from './folder-meta.ts';
import { HfJsonBackend } from './hf-backend.ts';
import { SentencePieceBackend } from './sentencepiece-backend.ts';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface EncodeOptions {
  /** BOS/EOS and other post-processing the tokenizer declares (default true, as in transformers). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  addGenerationPrompt?: boolean;
  /** true (default, as in transformers): token ids; false: the rendered string. */
  tokenize?: boolean;
  /** Extra template variables (tools, enable_thinking, ...). */
  variables?: Record<string, unknown>;
}

interface SpecialTokens {
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  unkToken: string | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
  unkTokenId: number | null;
}

export class Tokenizer {
  readonly dir: string;
  /** tokenizer_config.json's tokenizer_class ('Qwen2Tokenizer', 'LlamaTokenizer', ...), if any. */
  readonly tokenizerClass: string | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly chatTemplate: string | null;
  private readonly additionalSpecialTokens: readonly string[];
  private compiledTemplate: Template | null = null;

  constructor(
    private readonly impl: TokenizerBackend,
    meta: TokenizerFolderMeta,
    special: SpecialTokens,
    dir: string,
  ) {
    this.dir = dir;
    this.tokenizerClass = meta.tokenizerClass;
    this.chatTemplate = meta.chatTemplate;
    this.additionalSpecialTokens = meta.additionalSpecialTokens;
    this.bosToken = special.bosToken;
    this.eosToken = special.eosToken;
    this.padToken = special.padToken;
    this.unkToken = special.unkToken;
    this.bosTokenId = special.bosTokenId;
    this.eosTokenId = special.eosTokenId;
    this.padTokenId = special.padTokenId;
    this.unkTokenId = special.unkTokenId;
  }

  /** 'tokenizer.json' or 'sentencepiece'. */
  get backend(): TokenizerBackend['kind'] {
    return this.impl.kind;
  }

  get vocabSize(): number {
    return this.impl.vocabSize;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.impl.encode(text, options.addSpecialTokens ?? true);
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return this.impl.decode(Array.from(ids), options.skipSpecialTokens ?? false);
  }

  tokenToId(token: string): number | null {
    return this.impl.tokenToId(token);
  }

  idToToken(id: number): string | null {
    return this.impl.idToToken(id);
  }

  isSpecialId(id: number): boolean {
    return this.impl.specialIds.has(id);
  }

  /** Renders the model's own chat_template, as transformers' apply_chat_template does. */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { tokenize: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    const text = this.renderChatTemplate(messages, options.addGenerationPrompt ?? false, options.variables);
    // transformers tokenizes the rendered text without adding special tokens: the template has them
    return options.tokenize === false ? text : this.encode(text, { addSpecialTokens: false });
  }

  private renderChatTemplate(
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    variables: Record<string, unknown> = {},
  ): string {
    if (this.chatTemplate === null) {
      throw new XtunerError(`${this.dir}: the tokenizer has no chat_template`, {
        hint: 'add one to tokenizer_config.json (or chat_template.jinja), or use an XTuner prompt template by name',
      });
    }
    try {
      this.compiledTemplate ??= new Template(this.chatTemplate);
    } catch (e) {
      throw new XtunerError(`${this.dir}: chat_template does not parse (${(e as Error).message})`);
    }
    // the special tokens transformers passes to the template (its special_tokens_map)
    const specials: Record<string, unknown> = {};
    if (this.bosToken !== null) specials.bos_token = this.bosToken;
    if (this.eosToken !== null) specials.eos_token = this.eosToken;
    if (this.unkToken !== null) specials.unk_token = this.unkToken;
    if (this.padToken !== null) specials.pad_token = this.padToken;
    if (this.additionalSpecialTokens.length > 0) specials.additional_special_tokens = this.additionalSpecialTokens;
    try {
      return this.compiledTemplate.render({
        ...specials,
        ...variables,
        messages,
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (e) {
      throw new XtunerError(`${this.dir}: chat_template failed on these messages: ${(e as Error).message}`);
    }
  }
}

/** Token string and id of one special token: stated string first, else the fallback id. */
function resolve(
  impl: TokenizerBackend,
  stated: string | null | undefined,
  fallbackId: number | null,
): [string | null, number | null] {
  if (typeof stated === 'string') return [stated, impl.tokenToId(stated)];
  if (stated === null || fallbackId === null) return [null, null];
  return [impl.idToToken(fallbackId), fallbackId];
}

function resolveSpecialTokens(
  impl: TokenizerBackend,
  meta: TokenizerFolderMeta,
  fallback: { bos: number | null; eos: number | null; pad: number | null; unk: number | null },
): SpecialTokens {
  const [bosToken, bosTokenId] = resolve(impl, meta.bosToken, fallback.bos);
  const [eosToken, eosTokenId] = resolve(impl, meta.eosToken, fallback.eos);
  const [padToken, padTokenId] = resolve(impl, meta.padToken, fallback.pad);
  const [unkToken, unkTokenId] = resolve(impl, meta.unkToken, fallback.unk);
  return { bosToken, eosToken, padToken, unkToken, bosTokenId, eosTokenId, padTokenId, unkTokenId };
}

/** Classes whose fast tokenizer transformers builds BOS/EOS for from add_bos_token / add_eos_token (update_post_processor). */
const LLAMA_FAST_CLASSES = new Set(['LlamaTokenizer', 'LlamaTokenizerFast', 'CodeLlamaTokenizer', 'CodeLlamaTokenizerFast']);

/** BOS/EOS per add_bos_token / add_eos_token; transformers' Llama-style tokenizers (Llama, InternLM2) add BOS and no EOS by default. */
function bosEos(meta: TokenizerFolderMeta, special: { bosTokenId: number | null; eosTokenId: number | null }): BosEosPostProcessing {
  return { bosId: special.bosTokenId, eosId: special.eosTokenId, addBosToken: meta.addBosToken ?? true, addEosToken: meta.addEosToken ?? false };
}

export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new XtunerError(`tokenizer folder not found: ${dir}`, {
      hint: 'give a local model folder (xtuner-ts does not download from the Hugging Face hub)',
    });
  }
  const meta = readTokenizerFolderMeta(dir);
  const jsonFile = path.join(dir, 'tokenizer.json');
  const modelFile = path.join(dir, 'tokenizer.model');

  if (fs.existsSync(jsonFile)) {
    const impl = new HfJsonBackend(jsonFile, meta.rawConfig);
    const special = resolveSpecialTokens(impl, meta, { ...meta.configIds, unk: null });
    if (LLAMA_FAST_CLASSES.has(meta.tokenizerClass ?? '') && (meta.addBosToken !== null || meta.addEosToken !== null)) {
      impl.setPostProcessing(bosEos(meta, special));
    }
    return new Tokenizer(impl, meta, special, dir);
  }
  if (fs.existsSync(modelFile)) {
    const named = [meta.bosToken, meta.eosToken, meta.unkToken, meta.padToken, ...meta.additionalSpecialTokens].filter((t): t is string => typeof t === 'string' && t !== '');
    const impl = await SentencePieceBackend.load(modelFile, meta.declaredTokens, named);
    const { model } = impl;
    const special = resolveSpecialTokens(impl, meta, {
      bos: model.bosId,
      eos: model.eosId,
      pad: model.padId,
      unk: model.unkId,
    });
    impl.setPostProcessing(bosEos(meta, special));
    return new Tokenizer(impl, meta, special, dir);
  }
  throw new XtunerError(`${dir}: no tokenizer.json or tokenizer.model in this folder`);
}
