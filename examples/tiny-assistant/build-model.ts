// Builds the tiny-assistant model folder: this folder's config.json with random weights (seeded,
// so every build is the same model) saved as model.safetensors, plus the tokenizer files. The
// result is an ordinary Hugging Face model folder that `xtuner train` fine-tunes.
//   node --import tsx examples/tiny-assistant/build-model.ts OUT_DIR [--seed N]

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel } from '../../src/models/index.ts';

export const TINY_ASSISTANT_DIR = path.dirname(fileURLToPath(import.meta.url));
const FILES = ['config.json', 'tokenizer.model', 'tokenizer_config.json'];

/** Writes the model folder to `outDir` (created); returns its path. */
export function buildTinyAssistant(outDir: string, seed = 0, overrides: Record<string, unknown> = {}): string {
  const config = { ...JSON.parse(fs.readFileSync(path.join(TINY_ASSISTANT_DIR, 'config.json'), 'utf8')), ...overrides };
  fs.mkdirSync(outDir, { recursive: true });
  createModel(config, { seed }).saveHf(outDir);
  for (const f of FILES.slice(1)) fs.copyFileSync(path.join(TINY_ASSISTANT_DIR, f), path.join(outDir, f));
  return outDir;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) {
    process.stderr.write('usage: node --import tsx examples/tiny-assistant/build-model.ts OUT_DIR [--seed N]\n');
    process.exit(2);
  }
  const i = process.argv.indexOf('--seed');
  buildTinyAssistant(out, i > 0 ? Number(process.argv[i + 1]) : 0);
  process.stdout.write(`wrote ${out}\n`);
}
