// Test helper: model-style tokenizer folders assembled (as symlinks, in a temp dir) from the
// reference tokenizer files in test/fixtures/tokenizers/, which are named per model.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizer/index.ts';

export const FIXTURES = path.resolve('test/fixtures/tokenizers');

export type FixtureTokenizer = 'qwen3' | 'mistral' | 'internlm2_style';

const FILES: Record<FixtureTokenizer, Record<string, string>> = {
  qwen3: { 'tokenizer.json': 'qwen3_tokenizer.json', 'tokenizer_config.json': 'qwen3_tokenizer_config.json' },
  mistral: { 'tokenizer.json': 'mistral_tokenizer.json', 'tokenizer_config.json': 'mistral_tokenizer_config.json' },
  internlm2_style: { 'tokenizer.model': 'internlm2_style.model' },
};

/** A folder holding the fixture's files under their model-folder names; `extra` files added or replacing them. */
export function fixtureTokenizerDir(name: FixtureTokenizer, extra: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `xtuner-tok-${name}-`));
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [as, file] of Object.entries(FILES[name])) fs.symlinkSync(path.join(FIXTURES, file), path.join(dir, as));
  for (const [file, text] of Object.entries(extra)) {
    fs.rmSync(path.join(dir, file), { force: true }); // replaces a fixture file of that name
    fs.writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

const cache = new Map<FixtureTokenizer, Promise<Tokenizer>>();

/** The fixture tokenizer, loaded once per test process. */
export function fixtureTokenizer(name: FixtureTokenizer): Promise<Tokenizer> {
  let t = cache.get(name);
  if (t === undefined) {
    t = loadTokenizer(fixtureTokenizerDir(name));
    cache.set(name, t);
  }
  return t;
}
