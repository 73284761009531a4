// Writes the weights of one benchmark shape (bench/shapes.ts) as a Hugging Face model folder
// (config.json + model.safetensors, bf16, tiled random values: seconds, not minutes), so the CLI
// can train a real-size model where none can be downloaded. It writes no tokenizer: add one whose
// ids fit the vocabulary (scripts/gpu-cli.sh copies test/fixtures' Qwen3 tokenizer for the Qwen
// shape).
//   node --import tsx bench/make-shape-model.ts SHAPE OUT_DIR

import fs from 'node:fs';
import { createModel } from '../src/models/index.ts';
import { SHAPES } from './shapes.ts';

const [shapeName, out] = process.argv.slice(2);
const shape = SHAPES[shapeName ?? ''];
if (!shape || !out) {
  process.stderr.write(`usage: node --import tsx bench/make-shape-model.ts ${Object.keys(SHAPES).join('|')} OUT_DIR\n`);
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
createModel(shape, { dtype: 'bfloat16', init: 'tiled' }).saveHf(out);
process.stdout.write(`wrote ${out} (${shapeName}: bf16, tiled random weights)\n`);
