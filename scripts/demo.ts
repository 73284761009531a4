// The offline quickstart: XTuner's personal-assistant tutorial on a tiny model, on the CPU, with
// nothing downloaded. In a scratch folder (work_dirs/tiny-demo/) it builds the random tiny Llama
// of examples/tiny-assistant/, writes the assistant data, copies the demo config, fine-tunes it
// with LoRA, converts the checkpoint to a PEFT adapter, merges it into the base, and asks the
// merged model "请做一下自我介绍". Each step is the `xtuner` command a user would type.
//   node --import tsx scripts/demo.ts [--name NAME]      (from the repository root)

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildTinyAssistant } from '../examples/tiny-assistant/build-model.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCRATCH = path.join(REPO, 'work_dirs', 'tiny-demo');
const CONFIG = 'tiny_llama_lora_self_cognition_e1';
const nameAt = process.argv.indexOf('--name');
const NAME = nameAt > 0 ? process.argv[nameAt + 1]! : 'xtuner-ts';

const started = Date.now();

/** Runs one `xtuner` command in the scratch folder; its output shows live unless `capture`. */
function xtuner(args: string[], capture = false): string {
  process.stdout.write(`\n$ xtuner ${args.map((a) => (/[\s"'\u4e00-\u9fff]/.test(a) ? JSON.stringify(a) : a)).join(' ')}\n`);
  const tsx = import.meta.resolve('tsx');
  const r = spawnSync(process.execPath, ['--import', tsx, path.join(REPO, 'src', 'cli', 'main.ts'), ...args], {
    cwd: SCRATCH,
    stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    encoding: 'utf8',
  });
  if (capture) process.stdout.write(r.stdout);
  if (r.status !== 0) {
    process.stderr.write(`demo: \`xtuner ${args[0]}\` failed (exit ${r.status})\n`);
    process.exit(1);
  }
  return r.stdout ?? '';
}

fs.rmSync(SCRATCH, { recursive: true, force: true });
fs.mkdirSync(SCRATCH, { recursive: true });
process.stdout.write(`Working in ${path.relative(process.cwd(), SCRATCH) || SCRATCH}\n`);
buildTinyAssistant(path.join(SCRATCH, 'examples', 'tiny-assistant'));
process.stdout.write('Built a random 2-layer Llama (1M parameters) in examples/tiny-assistant/\n');

xtuner(['make-assistant-data', '--name', NAME, '--n', '2000']);
xtuner(['copy-cfg', CONFIG, '.']);
const copy = `${CONFIG}_copy.ts`;
xtuner(['train', copy]);
const workDir = path.join(SCRATCH, 'work_dirs', `${CONFIG}_copy`);
const checkpoint = path.relative(SCRATCH, path.join(workDir, fs.readFileSync(path.join(workDir, 'last_checkpoint'), 'utf8').trim()));
xtuner(['convert', 'pth_to_hf', copy, checkpoint, 'hf_adapter']);
xtuner(['convert', 'merge', 'examples/tiny-assistant', 'hf_adapter', 'merged']);
const answer = xtuner(['chat', 'merged', '--prompt-template', 'internlm2_chat', '--prompt', '请做一下自我介绍'], true).trim();

const learned = answer.includes(`${NAME}的小助手`);
process.stdout.write(
  `\n${learned ? 'The model learned who it is' : 'The model did not learn the answer'} ` +
    `(${((Date.now() - started) / 1000).toFixed(0)} s). Everything is in ${path.relative(process.cwd(), SCRATCH) || SCRATCH}/.\n`,
);
process.exit(learned ? 0 : 1);
