// Writing config-layer files: the resolved config of a run (pure JSON that `loadConfig` reads back
// unchanged, so `xtuner train work_dirs/x/config.resolved.json` repeats a run) and copies of
// library configs. Writes go through `<file>.tmp-<pid>` and a rename, so no reader ever sees half.

import fs from 'node:fs';
import path from 'node:path';
import { XtunerError } from '../errors.ts';
import type { XtunerConfig } from './schema.ts';

/** Writes `text` to `file` atomically; failures are XtunerErrors naming the file. */
export function writeTextAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new XtunerError(`cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** The resolved config as JSON text (keys in schema order, every default present). */
export function resolvedConfigJson(config: XtunerConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Saves the resolved config into `file` (e.g. `<work_dir>/config.resolved.json`). */
export function saveResolvedConfig(config: XtunerConfig, file: string): void {
  writeTextAtomic(file, resolvedConfigJson(config));
}
