// `xtuner make-assistant-data --name NAME`: writes the personal-assistant data of XTuner's tutorial
// (N chat samples in which the model introduces itself as NAME's assistant), OpenAI format.

import path from 'node:path';
import { parseCommandArgs, UsageError, type Command } from '../command.ts';

export const command: Command = {
  name: 'make-assistant-data',
  summary: 'Write the tutorial’s personal-assistant dataset (the model introduces itself as NAME’s assistant)',
  usage: [
    'xtuner make-assistant-data --name NAME [--n N] [--out FILE]',
    '',
    'Options:',
    '  --name NAME  whose assistant the model says it is',
    '  --n N        number of samples (default 10000)',
    '  --out FILE   where to write: .jsonl (one record per line) or .json (an array) (default data/personal_assistant.jsonl)',
    '',
    'Train on it with dataset_format "openai".',
  ].join('\n'),
  async run(argv) {
    const { values } = parseCommandArgs(command, argv, {
      name: { type: 'string' },
      n: { type: 'string', default: '10000' },
      out: { type: 'string', default: 'data/personal_assistant.jsonl' },
    });
    if (values.name === undefined) throw new UsageError(command.name, 'missing --name NAME');
    const n = Number(values.n);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(command.name, `--n must be a positive integer, got '${values.n}'`);
    const out = values.out!;
    const { makeAssistantRecords, recordsText } = await import('../../data/index.ts');
    const { writeFileAtomic } = await import('../../io/atomic.ts');
    writeFileAtomic(out, recordsText(out, makeAssistantRecords(values.name, n)));
    process.stdout.write(`Wrote ${n} samples to ${path.relative(process.cwd(), out) || out}\n`);
  },
};
