// The typed list of `xtuner` commands, in `xtuner --help` order. Each entry loads its module only
// when needed, so one command's heavy imports (or a half-built one) never slow or break another;
// `import()` of a module that does not export `command: Command` fails to compile.

import type { Command } from '../command.ts';

export interface CommandEntry {
  /** Must equal the loaded command's `name` (a test checks). */
  name: string;
  load: () => Promise<{ command: Command }>;
}

export const commands: readonly CommandEntry[] = [
  { name: 'list-cfg', load: () => import('./list-cfg.ts') },
  { name: 'copy-cfg', load: () => import('./copy-cfg.ts') },
  { name: 'check-custom-dataset', load: () => import('./check-custom-dataset.ts') },
  { name: 'log-dataset', load: () => import('./log-dataset.ts') },
  { name: 'make-assistant-data', load: () => import('./make-assistant-data.ts') },
  { name: 'train', load: () => import('./train.ts') },
  { name: 'convert', load: () => import('./convert.ts') },
  { name: 'chat', load: () => import('./chat.ts') },
  { name: 'env', load: () => import('./env.ts') },
];
