// What a Hugging Face model folder says about its tokenizer, besides the vocabulary itself:
// tokenizer_config.json, special_tokens_map.json, chat_template.jinja / chat_template.json and the
// model's config.json (token ids as a last resort). Reads files only; builds no tokenizer.

import fs from 'node:fs';
import path from 'node:path';
import { XtunerError } from '../errors.ts';

/** A token declared by the folder (added_tokens_decoder of tokenizer_config.json). */
export interface DeclaredToken {
  id: number;
  content: string;
  special: boolean;
}

export interface TokenizerFolderMeta {
  /** `tokenizer_class` of tokenizer_config.json ('Qwen2Tokenizer', 'LlamaTokenizer', ...). */
  tokenizerClass: string | null;
  /** Special tokens as strings; null where the files say null, undefined where they say nothing. */
  bosToken: string | null | undefined;
  eosToken: string | null | undefined;
  padToken: string | null | undefined;
  unkToken: string | null | undefined;
  /** tokenizer_config.json's add_bos_token / add_eos_token; null where the file does not say. */
  addBosToken: boolean | null;
  addEosToken: boolean | null;
  chatTemplate: string | null;
  declaredTokens: DeclaredToken[];
  additionalSpecialTokens: string[];
  /** Ids from config.json, used only where no token string names them. */
  configIds: { bos: number | null; eos: number | null; pad: number | null };
  /** tokenizer_config.json as read (passed on to the tokenizer.json backend). */
  rawConfig: Record<string, unknown>;
}

export function readJsonFile(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new XtunerError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function readJsonObject(file: string): Record<string, unknown> | null {
  if (!fs.existsSync(file)) return null;
  const value = readJsonFile(file);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new XtunerError(`${file}: expected a JSON object at the top level`);
  }
  return value as Record<string, unknown>;
}

/** A special token is written either as a string or as an AddedToken object `{ content, ... }`. */
function tokenString(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

function firstId(value: unknown): number | null {
  if (typeof value === 'number') return value;
  if (Array.isArray(value) && typeof value[0] === 'number') return value[0];
  return null;
}

/** Older folders store several named templates as a list; the 'default' one is the chat template. */
function chatTemplateOf(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t.name === 'default') ?? named[0];
    return typeof pick?.template === 'string' ? pick.template : null;
  }
  return null;
}

export function readTokenizerFolderMeta(dir: string): TokenizerFolderMeta {
  const config = readJsonObject(path.join(dir, 'tokenizer_config.json')) ?? {};
  const specialMap = readJsonObject(path.join(dir, 'special_tokens_map.json')) ?? {};
  const modelConfig = readJsonObject(path.join(dir, 'config.json')) ?? {};

  // special_tokens_map.json overrides tokenizer_config.json, as in transformers' from_pretrained
  const special = (key: string): string | null | undefined => {
    const value = tokenString(specialMap[key]) ?? tokenString(config[key]);
    if (value !== null) return value;
    return key in specialMap || key in config ? null : undefined;
  };

  const declaredTokens: DeclaredToken[] = [];
  const decoder = config.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    for (const [id, tok] of Object.entries(decoder as Record<string, unknown>)) {
      const content = tokenString(tok);
      if (content === null) continue;
      declaredTokens.push({ id: Number(id), content, special: (tok as { special?: unknown }).special === true });
    }
  }
  const additional = config.additional_special_tokens ?? specialMap.additional_special_tokens;
  const additionalSpecialTokens = Array.isArray(additional)
    ? additional.map(tokenString).filter((t): t is string => t !== null)
    : [];

  let chatTemplate = chatTemplateOf(config.chat_template);
  const jinjaFile = path.join(dir, 'chat_template.jinja');
  const jsonFile = path.join(dir, 'chat_template.json');
  if (fs.existsSync(jinjaFile)) chatTemplate = fs.readFileSync(jinjaFile, 'utf8');
  else if (chatTemplate === null && fs.existsSync(jsonFile)) {
    chatTemplate = chatTemplateOf((readJsonObject(jsonFile) ?? {}).chat_template);
  }

  return {
    tokenizerClass: typeof config.tokenizer_class === 'string' ? config.tokenizer_class : null,
    bosToken: special('bos_token'),
    eosToken: special('eos_token'),
    padToken: special('pad_token'),
    unkToken: special('unk_token'),
    addBosToken: typeof config.add_bos_token === 'boolean' ? config.add_bos_token : null,
    addEosToken: typeof config.add_eos_token === 'boolean' ? config.add_eos_token : null,
    chatTemplate,
    declaredTokens,
    additionalSpecialTokens,
    configIds: {
      bos: firstId(modelConfig.bos_token_id),
      eos: firstId(modelConfig.eos_token_id),
      pad: firstId(modelConfig.pad_token_id),
    },
    rawConfig: config,
  };
}
