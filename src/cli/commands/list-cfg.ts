// `xtuner list-cfg [-p PATTERN]`: the built-in configs, in XTuner's layout and matching rule
// (case-insensitive substring of the name).

import { listBuiltinConfigs } from '../../config/index.ts';
import { parseCommandArgs, type Command } from '../command.ts';

export const command: Command = {
  name: 'list-cfg',
  summary: 'List the built-in configs',
  usage: [
    'xtuner list-cfg [-p PATTERN]',
    '',
    'Options:',
    '  -p, --pattern PATTERN  only names containing PATTERN (case-insensitive), e.g. internlm2_1_8b or qlora',
  ].join('\n'),
  async run(argv) {
    const { values } = parseCommandArgs(command, argv, { pattern: { type: 'string', short: 'p' } });
    const pattern = values.pattern?.toLowerCase();
    const lines = ['==========================CONFIGS==========================='];
    if (values.pattern !== undefined) lines.push(`PATTERN: ${values.pattern}`, '-------------------------------');
    for (const { name } of listBuiltinConfigs()) {
      if (pattern === undefined || name.toLowerCase().includes(pattern)) lines.push(name);
    }
    lines.push('=============================================================');
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
