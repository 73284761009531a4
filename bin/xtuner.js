#!/usr/bin/env node
// The `xtuner` binary: runs the built CLI (dist/cli/main.js, made by `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(`error: xtuner-ts is not built (${fileURLToPath(main)} is missing)\nhint: run \`npm run build\` in ${fileURLToPath(new URL('..', import.meta.url))}\n`);
  process.exit(1);
}
const { runCli } = await import(main.href);
await runCli(process.argv.slice(2));
