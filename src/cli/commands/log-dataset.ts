// `xtuner log-dataset CONFIG --show ...`: the first training item of a config's dataset (a packed
// row, or a sample), as XTuner's log_dataset prints it: text, masked text, input ids, labels.

import { parseCommandArgs, UsageError, type Command } from '../command.ts';

export const command: Command = {
  name: 'log-dataset',
  summary: 'Print a training item of a config’s dataset: text, masked text, input ids, labels',
  usage: [
    'xtuner log-dataset CONFIG [--show text|masked_text|input_ids|labels|all] [--index N] [--cfg-options KEY=VALUE ...]',
    '',
    'Arguments:',
    '  CONFIG         config file (.ts, .js, .json, .yaml) or built-in config name',
    'Options:',
    '  --show         what to print (default text); masked_text prints [-100] per masked token, then the supervised text',
    '  --index N      which training item (packed row or sample), 0-based (default 0)',
    '  --cfg-options  override config keys, e.g. --cfg-options pack_to_max_length=false',
  ].join('\n'),
  async run(argv) {
    const { extractCfgOptions, loadConfig, resolveConfigPath } = await import('../../config/index.ts');
    const { cfgOptions, rest } = extractCfgOptions(argv);
    const { values, positionals } = parseCommandArgs(
      command,
      rest,
      { show: { type: 'string', default: 'text' }, index: { type: 'string', default: '0' } },
      { names: ['CONFIG'] },
    );
    const index = Number(values.index);
    if (!Number.isInteger(index) || index < 0) throw new UsageError(command.name, `--index must be a whole number ≥ 0, got '${values.index}'`);

    const { formatLogItem, loadTrainData, LOG_SHOW } = await import('../../data/index.ts');
    const show = LOG_SHOW.find((s) => s === values.show);
    if (show === undefined) throw new UsageError(command.name, `--show must be one of ${LOG_SHOW.join(', ')}, got '${values.show}'`);
    const cfg = await loadConfig(resolveConfigPath(positionals[0]!), { cfgOptions });
    const { resolveModelPath } = await import('../../io/hf-hub.ts');
    const { loadTokenizer } = await import('../../tokenizer/index.ts');
    const tokenizer = await loadTokenizer(await resolveModelPath(cfg.pretrained_model_name_or_path));
    const { items } = await loadTrainData(cfg, tokenizer);
    if (index >= items.length) throw new UsageError(command.name, `--index ${index}: the dataset has ${items.length} item(s)`);
    process.stdout.write(formatLogItem(items[index]!, tokenizer, show));
  },
};
