// `xtuner train CONFIG`: fine-tunes a model as the config says, into work_dirs/<config name>/
// (checkpoints, logs.jsonl, eval-chat answers, the resolved config). Flags as XTuner's train.py:
// --work-dir, --resume [CKPT] (no value: the work folder's last checkpoint), --seed,
// --cfg-options key=value ...; plus --device.

import fs from 'node:fs';
import path from 'node:path';
import { EXIT_INTERRUPTED, parseCommandArgs, UsageError, type Command } from '../command.ts';

export const command: Command = {
  name: 'train',
  summary: 'Fine-tune a model with a config (full, LoRA or QLoRA)',
  usage: [
    'xtuner train CONFIG [--work-dir DIR] [--resume [CKPT]] [--seed N] [--device cpu|cuda|auto] [--cfg-options KEY=VALUE ...]',
    '',
    'Arguments:',
    '  CONFIG                 a config file (.ts, .js, .json, .yaml) or a built-in config name (`xtuner list-cfg`)',
    'Options:',
    '  --work-dir DIR         where checkpoints and logs go (default work_dirs/<config name>)',
    '  --resume [CKPT]        continue from a checkpoint folder (iter_<N>); without CKPT, from the',
    "                         work folder's last_checkpoint. The losses continue as if never stopped.",
    '  --seed N               overrides the config seed',
    '  --device D             cpu, cuda or auto (overrides the config)',
    '  --cfg-options K=V ...  override config settings, e.g. lr=1e-4 lora.r=16 max_iters=100',
    '',
    'Ctrl-C finishes the current iteration, saves a checkpoint and stops (exit code 130); resume it',
    'with --resume. Iterations are batches, as in XTuner: max_iters, save_steps, evaluation_freq and',
    'log_interval count them; the optimizer steps every accumulative_counts iterations.',
    'A second `xtuner train` into a work folder in use is refused.',
  ].join('\n'),
  async run(argv) {
    const { extractCfgOptions, loadConfig, resolveConfigPath } = await import('../../config/index.ts');
    const { cfgOptions, rest } = extractCfgOptions(argv);
    const { args, resume } = takeResume(rest);
    const { values, positionals } = parseCommandArgs(
      command,
      args,
      { 'work-dir': { type: 'string' }, seed: { type: 'string' }, device: { type: 'string' } },
      { names: ['CONFIG'] },
    );
    if (values.seed !== undefined) {
      if (!/^\d+$/.test(values.seed)) throw new UsageError(command.name, `--seed must be a non-negative integer, got '${values.seed}'`);
      cfgOptions.push(`seed=${values.seed}`);
    }
    if (values.device !== undefined) {
      if (!['cpu', 'cuda', 'auto'].includes(values.device)) throw new UsageError(command.name, `--device must be cpu, cuda or auto, got '${values.device}'`);
      cfgOptions.push(`device=${values.device}`);
    }
    const configPath = resolveConfigPath(positionals[0]!);
    const config = await loadConfig(configPath, { cfgOptions });
    const { defaultWorkDir } = await import('../../train/work-dir.ts');
    const { train } = await import('../../train/trainer.ts');
    const workDir = path.resolve(values['work-dir'] ?? defaultWorkDir(configPath));
    const result = await train({ config, workDir, resume });
    if (result.status === 'completed' && result.checkpoint) {
      const rel = (p: string) => path.relative(process.cwd(), p) || p;
      process.stdout.write(
        `Next: xtuner convert pth_to_hf ${rel(configPath)} ${rel(result.checkpoint)} ${rel(path.join(workDir, config.lora ? 'hf_adapter' : 'hf_model'))}\n`,
      );
    }
    return result.status === 'interrupted' ? EXIT_INTERRUPTED : undefined;
  },
};

/**
 * `--resume` takes an optional value, which parseArgs cannot express: `--resume=CKPT`, or
 * `--resume CKPT` where CKPT is a folder (or a second word besides CONFIG); otherwise 'auto'.
 */
function takeResume(argv: readonly string[]): { args: string[]; resume: string | null } {
  const args: string[] = [];
  let resume: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if (a.startsWith('--resume=')) {
      resume = a.slice('--resume='.length) || 'auto';
      continue;
    }
    if (a !== '--resume') {
      args.push(a);
      continue;
    }
    const next = argv[i + 1];
    const otherWords = argv.filter((w, j) => j !== i + 1 && !w.startsWith('-')).length;
    const isCheckpoint =
      next !== undefined &&
      !next.startsWith('-') &&
      ((fs.existsSync(next) && fs.statSync(next).isDirectory()) || (!fs.existsSync(next) && otherWords > 0));
    if (isCheckpoint) {
      resume = next;
      i++;
    } else resume = 'auto';
  }
  return { args, resume };
}
