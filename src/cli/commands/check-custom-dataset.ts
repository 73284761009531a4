// `xtuner check-custom-dataset CONFIG`: reads and encodes the whole dataset of a config as training
// would, and lists every problem (file, line or record, field) with the counts of what is dropped
// or truncated. Exits non-zero when there is a problem.

import { XtunerError } from '../../errors.ts';
import { parseCommandArgs, type Command } from '../command.ts';

export const command: Command = {
  name: 'check-custom-dataset',
  summary: 'Check a config’s dataset: list every bad record, count truncated and dropped samples',
  usage: [
    'xtuner check-custom-dataset CONFIG [--cfg-options KEY=VALUE ...]',
    '',
    'Arguments:',
    '  CONFIG         config file (.ts, .js, .json, .yaml) or built-in config name',
    'Options:',
    '  --cfg-options  override config keys, e.g. --cfg-options max_length=4096',
  ].join('\n'),
  async run(argv) {
    const { extractCfgOptions, loadConfig, resolveConfigPath } = await import('../../config/index.ts');
    const { cfgOptions, rest } = extractCfgOptions(argv);
    const { positionals } = parseCommandArgs(command, rest, {}, { names: ['CONFIG'] });
    const cfg = await loadConfig(resolveConfigPath(positionals[0]!), { cfgOptions });
    const { resolveModelPath } = await import('../../io/hf-hub.ts');
    const { loadTokenizer } = await import('../../tokenizer/index.ts');
    const { checkDataset, formatCheckReport } = await import('../../data/index.ts');
    const tokenizer = await loadTokenizer(await resolveModelPath(cfg.pretrained_model_name_or_path));
    const report = await checkDataset(cfg, tokenizer);
    process.stdout.write(formatCheckReport(cfg, report));
    if (report.problems.length > 0) {
      throw new XtunerError(`the dataset has ${report.problems.length} problem(s), listed above`);
    }
  },
};
