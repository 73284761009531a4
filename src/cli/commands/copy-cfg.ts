// `xtuner copy-cfg NAME DIR`: copies a built-in config into DIR as `<NAME>_copy.ts`, as XTuner
// does, ready to edit and pass to `xtuner train`.

import path from 'node:path';
import { copyBuiltinConfig } from '../../config/index.ts';
import { parseCommandArgs, type Command } from '../command.ts';

export const command: Command = {
  name: 'copy-cfg',
  summary: 'Copy a built-in config into a folder, to edit',
  usage: [
    'xtuner copy-cfg NAME DIR [--force]',
    '',
    'Arguments:',
    '  NAME     a built-in config (see `xtuner list-cfg`)',
    '  DIR      folder to copy into (created if missing); the copy is DIR/NAME_copy.ts',
    'Options:',
    '  --force  overwrite an existing copy',
  ].join('\n'),
  async run(argv) {
    const { values, positionals } = parseCommandArgs(command, argv, { force: { type: 'boolean' } }, { names: ['NAME', 'DIR'] });
    const [name, dir] = positionals;
    const dest = copyBuiltinConfig(name, dir, { force: values.force });
    process.stdout.write(`Copy to ${path.relative(process.cwd(), dest) || dest}\n`);
  },
};
