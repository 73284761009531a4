// `xtuner convert pth_to_hf CONFIG CKPT OUT` (checkpoint -> PEFT adapter, or HF model for full
// fine-tuning) and `xtuner convert merge BASE ADAPTER OUT` (adapter folded into its base, saved as
// a Hugging Face model), as XTuner's model converters.

import path from 'node:path';
import { parseCommandArgs, UsageError, type Command } from '../command.ts';

const SUBCOMMANDS = ['pth_to_hf', 'merge'] as const;

export const command: Command = {
  name: 'convert',
  summary: 'Convert a checkpoint to a PEFT adapter / HF model (pth_to_hf), or merge an adapter into its base (merge)',
  usage: [
    'xtuner convert pth_to_hf CONFIG CKPT OUT [--fp32] [--max-shard-size SIZE] [--cfg-options KEY=VALUE ...]',
    'xtuner convert merge BASE ADAPTER OUT [--dtype auto|float32|bfloat16|float16] [--max-shard-size SIZE] [--device auto|cpu|cuda] [--safe-serialization]',
    '',
    'pth_to_hf: CONFIG is the config the run was trained with, CKPT a checkpoint folder',
    '  (work_dirs/<name>/iter_<N>). LoRA/QLoRA runs give a PEFT adapter folder in OUT; full',
    '  fine-tuning gives a Hugging Face model folder (float16 unless --fp32, as XTuner).',
    'merge: BASE is a model folder or HF id, ADAPTER a PEFT adapter folder; OUT gets the merged',
    '  model with the base\'s config and tokenizer files. --dtype auto keeps the base\'s dtypes.',
    'Options:',
    '  --max-shard-size SIZE  largest weight file, e.g. 2GB or 500MB (default 2GB, as XTuner)',
    '  --device D             merge: where the adapters\' products B A are computed: cpu, cuda or',
    '                         auto (default: CUDA where it works); weights stream through the host',
    '  --safe-serialization   merge: accepted for XTuner\'s commands; safetensors is always written',
  ].join('\n'),
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === 'pth_to_hf') return pthToHfCommand(rest);
    if (sub === 'merge') return mergeCommand(rest);
    const { didYouMean } = await import('../../config/index.ts');
    throw new UsageError(
      command.name,
      sub === undefined ? `missing the conversion: one of ${SUBCOMMANDS.join(', ')}` : `unknown conversion "${sub}"${didYouMean(sub, SUBCOMMANDS)}`,
    );
  },
};

/** "2GB", "500MB", "1.5GiB", or a byte count -> bytes (decimal units, as transformers). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?$/i.exec(text.trim());
  if (!m) throw new UsageError(command.name, `--max-shard-size: expected a size such as 2GB or 500MB, got '${text}'`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const factor: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };
  return Math.floor(Number(m[1]) * factor[unit]!);
}

async function pthToHfCommand(argv: string[]): Promise<void> {
  const { extractCfgOptions, loadConfig, resolveConfigPath } = await import('../../config/index.ts');
  const { cfgOptions, rest } = extractCfgOptions(argv);
  const { values, positionals } = parseCommandArgs(
    { name: 'convert pth_to_hf' },
    rest,
    // --safe-serialization: XTuner's flag; safetensors is what is always written
    { fp32: { type: 'boolean' }, 'max-shard-size': { type: 'string', default: '2GB' }, 'safe-serialization': { type: 'boolean' } },
    { names: ['CONFIG', 'CKPT', 'OUT'] },
  );
  const [cfgArg, ckpt, out] = positionals as [string, string, string];
  const config = await loadConfig(resolveConfigPath(cfgArg), { cfgOptions });
  const { pthToHf } = await import('../../train/convert.ts');
  const result = await pthToHf({
    config,
    checkpointDir: path.resolve(ckpt),
    outDir: path.resolve(out),
    dtype: values.fp32 ? 'float32' : 'float16',
    maxShardBytes: parseSize(values['max-shard-size']!),
  });
  process.stdout.write(`Saved ${result.kind === 'adapter' ? 'the PEFT adapter' : 'the Hugging Face model'} to ${out}\nAll done!\n`);
}

async function mergeCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(
    { name: 'convert merge' },
    argv,
    {
      dtype: { type: 'string', default: 'auto' },
      'max-shard-size': { type: 'string', default: '2GB' },
      device: { type: 'string', default: 'auto' },
      'safe-serialization': { type: 'boolean' }, // XTuner's flag: safetensors is what is always written
      'is-clip': { type: 'boolean' },
    },
    { names: ['BASE', 'ADAPTER', 'OUT'] },
  );
  const dtype = values.dtype!;
  if (!['auto', 'float32', 'bfloat16', 'float16'].includes(dtype)) {
    throw new UsageError('convert merge', `--dtype must be auto, float32, bfloat16 or float16, got '${dtype}'`);
  }
  if (!['auto', 'cpu', 'cuda'].includes(values.device!)) throw new UsageError('convert merge', `--device must be auto, cpu or cuda, got '${values.device}'`);
  if (values['is-clip']) throw new UsageError('convert merge', '--is-clip (a LLaVA visual encoder\'s adapter) is not supported yet: xtuner-ts merges language models');
  const [base, adapter, out] = positionals as [string, string, string];
  const { resolveModelPath } = await import('../../io/hf-hub.ts');
  const { mergeAdapterToHf } = await import('../../peft/merge.ts');
  const { resolveDevice } = await import('../../train/setup.ts');
  const report = mergeAdapterToHf({
    baseDir: await resolveModelPath(base),
    adapterDir: path.resolve(adapter),
    outDir: path.resolve(out),
    dtype: dtype as 'auto' | 'float32' | 'bfloat16' | 'float16',
    maxShardBytes: parseSize(values['max-shard-size']!),
    device: resolveDevice(values.device as 'auto' | 'cpu' | 'cuda'),
  });
  process.stdout.write(`Merged ${report.mergedModules.length} modules; saved to ${out}\nAll done!\n`);
}
