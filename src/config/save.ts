// Writing config-layer files: the resolved config of a run (pure JSON that `loadConfig` reads back
// unchanged, so `xtuner train work_dirs/x/config.resolved.json` repeats a run) and copies of
// library configs. Every write is atomic (src/io/atomic.ts).

import { writeFileAtomic } from '../io/atomic.ts';
import type { XtunerConfig } from './schema.ts';

/** The resolved config as JSON text (keys in schema order, every default present). */
export function resolvedConfigJson(config: XtunerConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Saves the resolved config into `file` (e.g. `<work_dir>/config.resolved.json`). */
export function saveResolvedConfig(config: XtunerConfig, file: string): void {
  writeFileAtomic(file, resolvedConfigJson(config));
}
