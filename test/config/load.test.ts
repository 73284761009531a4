import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import {
  applyCfgOptions,
  extractCfgOptions,
  loadConfig,
  parseCfgOptions,
  saveResolvedConfig,
  type XtunerConfig,
} from '../../src/config/index.ts';

const CONFIG_MODULE = path.resolve('src/config/index.ts');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-config-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

async function rejectsWith(promise: Promise<unknown>, ...patterns: RegExp[]): Promise<XtunerError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof XtunerError, `expected an XtunerError, got ${String((err as Error)?.stack ?? err)}`);
    for (const p of patterns) assert.match(err.message, p);
    return err;
  }
  assert.fail('expected a rejection');
}

// XTuner's values for what a config leaves out, read from its configs (PART 1 of
// internlm2_chat_1_8b_qlora_alpaca_e3.py, peft's LoraConfig there, the LoggerHook interval).
const XTUNER_DEFAULTS = {
  max_length: 2048,
  pack_to_max_length: true,
  shuffle_before_pack: true,
  batch_size: 1,
  accumulative_counts: 16,
  dataloader_num_workers: 0,
  max_epochs: 3,
  optim_type: 'AdamW',
  lr: 2e-4,
  betas: [0.9, 0.999],
  weight_decay: 0,
  max_norm: 1,
  warmup_ratio: 0.03,
  save_steps: 500,
  save_total_limit: 2,
  evaluation_freq: 500,
  SYSTEM: '',
  evaluation_inputs: ['请给我介绍五个上海的景点', 'Please tell me five scenic spots in Shanghai'],
  log_interval: 10,
  lora: null,
  quantization: null,
};

const SETTINGS = { pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b', data_path: 'data/a.json', lr: 1e-5, lora: { r: 8 } };

test('the same settings load alike from .ts, .mts, .js, .mjs, .json, .yaml and .yml', async () => {
  const json = JSON.stringify(SETTINGS);
  const files = [
    write('a.ts', `import { defineConfig } from '${CONFIG_MODULE}';\nexport default defineConfig(${json});\n`),
    write('b.mts', `import type { XtunerConfigInput } from '${CONFIG_MODULE}';\nexport default ${json} satisfies XtunerConfigInput;\n`),
    write('c.js', `export default ${json};\n`),
    write('d.mjs', `const lr = 1e-5;\nexport default { ...${json}, lr };\n`),
    write('e.json', json),
    write('f.yaml', 'pretrained_model_name_or_path: internlm/internlm2-chat-1_8b\ndata_path: data/a.json\nlr: 1.0e-5\nlora:\n  r: 8\n'),
    write('g.yml', 'pretrained_model_name_or_path: internlm/internlm2-chat-1_8b\ndata_path: data/a.json\nlr: 0.00001\nlora: { r: 8 }\n'),
  ];
  const loaded = await Promise.all(files.map((f) => loadConfig(f)));
  for (const cfg of loaded.slice(1)) assert.deepEqual(cfg, loaded[0]);
  const cfg = loaded[0];
  assert.equal(cfg.lr, 1e-5);
  // LoRA keys not given take peft/XTuner's values.
  assert.deepEqual(cfg.lora, { r: 8, lora_alpha: 16, lora_dropout: 0.1, bias: 'none', task_type: 'CAUSAL_LM' });
});

test('keys left out take XTuner\'s defaults', async () => {
  const cfg = await loadConfig(write('min.json', JSON.stringify({ pretrained_model_name_or_path: 'm', data_path: 'd.json' })));
  for (const [key, value] of Object.entries(XTUNER_DEFAULTS)) {
    assert.deepEqual(cfg[key as keyof XtunerConfig], value, key);
  }
  // QLoRA's BitsAndBytes dict, when asked for, fills in NF4 with double quantisation.
  const q = await loadConfig(write('q.json', JSON.stringify({ pretrained_model_name_or_path: 'm', data_path: 'd', lora: {}, quantization: {} })));
  assert.deepEqual(q.quantization, {
    load_in_4bit: true,
    load_in_8bit: false,
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: true,
    bnb_4bit_compute_dtype: 'bfloat16',
  });
});

test('a misspelt key is an error with the key it should be, naming the file and the key path', async () => {
  const file = write('typo.ts', `export default { pretrained_model_name_or_path: 'm', data_path: 'd', max_lenght: 512, lora: { r: 8, lora_alpah: 32 } };\n`);
  const err = await rejectsWith(loadConfig(file));
  const lines = err.message.split('\n').slice(1).map((l) => l.trim());
  assert.deepEqual(lines.sort(), [
    `${file}: lora.lora_alpah: unknown key (did you mean "lora_alpha"?)`,
    `${file}: max_lenght: unknown key (did you mean "max_length"?)`,
  ]);
});

test('XTuner setting names that are spelt differently here get advice', async () => {
  const file = write('xt.json', JSON.stringify({ pretrained_model_name_or_path: 'm', alpaca_en_path: 'tatsu-lab/alpaca', use_varlen_attn: false }));
  await rejectsWith(
    loadConfig(file),
    /xt\.json: data_path: missing: expected a path or a non-empty list of paths\n/,
    /alpaca_en_path: unknown key \(use `data_path`\)/,
    /use_varlen_attn: unknown key \(remove it: packed rows always attend per sample here\)/,
  );
});

test('wrong values say what was expected and what was found, one line each', async () => {
  const file = write('bad.json', JSON.stringify({
    pretrained_model_name_or_path: 'm',
    data_path: 3,
    lr: 'big',
    max_length: 1.5,
    dataset_format: 'alpacca',
    save_total_limit: 0,
  }));
  const err = await rejectsWith(loadConfig(file));
  const lines = err.message.split('\n').slice(1).map((l) => l.trim());
  assert.deepEqual(lines.sort(), [
    `${file}: data_path: expected a path or a non-empty list of paths, got 3`,
    `${file}: dataset_format: expected one of "alpaca", "alpaca_zh", "openai", "conversation", "sharegpt", "llava", "oasst1", "pretrain"; got "alpacca" (did you mean "alpaca"?)`,
    `${file}: lr: expected a number, got "big"`,
    `${file}: max_length: expected an integer, got 1.5`,
    `${file}: save_total_limit: expected -1 (keep all) or a positive count, got 0`,
  ].sort());
});

test('prompt_template must be one of XTuner\'s template names (or hf)', async () => {
  const ok = await loadConfig(write('t.json', JSON.stringify({ pretrained_model_name_or_path: 'm', data_path: 'd', prompt_template: 'hf' })));
  assert.equal(ok.prompt_template, 'hf');
  const file = write('t2.json', JSON.stringify({ pretrained_model_name_or_path: 'm', data_path: 'd', prompt_template: 'qwen_caht' }));
  await rejectsWith(loadConfig(file), /t2\.json: prompt_template: got "qwen_caht", not one of the \d+ known names \(did you mean "qwen_chat"\?\)/);
});

test('rules about the whole config: a 4-bit base needs LoRA', async () => {
  const file = write('q4.json', JSON.stringify({ pretrained_model_name_or_path: 'm', data_path: 'd', quantization: {} }));
  const err = await rejectsWith(loadConfig(file));
  assert.equal(
    err.message.split('\n')[1].trim(),
    `${file}: quantization: a 4-bit base model cannot be trained in full: set \`lora\` too (QLoRA), or set quantization to null`,
  );
});

test('files that cannot be read as configs fail with the file and the reason', async () => {
  await rejectsWith(loadConfig(path.join(dir, 'none.ts')), /config .*none\.ts does not exist/);
  const py = await rejectsWith(loadConfig(write('x.py', 'lr = 1')), /unsupported extension "\.py"/);
  assert.match(py.hint ?? '', /PART 1/);
  await rejectsWith(loadConfig(write('bad.json', '{"lr": 1,,}')), /bad\.json: not valid JSON/);
  await rejectsWith(loadConfig(write('bad.yaml', 'a: 1\n b: [\n')), /bad\.yaml: not valid YAML: line \d+, column \d+/);
  await rejectsWith(loadConfig(write('syntax.ts', 'export default {\n  lr: 1,,\n};\n')), /syntax\.ts failed to load: \S*syntax\.ts:2:\d+: Expected identifier but found ","/);
  await rejectsWith(loadConfig(write('throws.ts', "throw new Error('boom');\n")), /throws\.ts failed to load: boom/);
  await rejectsWith(loadConfig(write('nodefault.ts', 'export const lr = 1;\n')), /nodefault\.ts has no default export/);
  await rejectsWith(loadConfig(write('list.json', '[1]')), /list\.json: expected an object of settings at the top level, got a list/);
  const missing = await rejectsWith(
    loadConfig(write('imports.ts', "import { defineConfig } from 'xtuner-ts';\nexport default defineConfig({});\n")),
    /imports\.ts imports xtuner-ts, which cannot be found/,
  );
  assert.match(missing.hint ?? '', /import type/);
});

test('a config edited while the process runs is read again', async () => {
  const file = write('edit.ts', "export default { pretrained_model_name_or_path: 'm', data_path: 'd', lr: 1 };\n");
  assert.equal((await loadConfig(file)).lr, 1);
  fs.writeFileSync(file, "export default { pretrained_model_name_or_path: 'm', data_path: 'd', lr: 2 };\n");
  assert.equal((await loadConfig(file)).lr, 2);
});

test('--cfg-options: JSON values where they parse, strings otherwise, dotted keys, list items', async () => {
  const file = write('base.json', JSON.stringify({ ...SETTINGS, lora: null }));
  const cfg = await loadConfig(file, {
    cfgOptions: [
      'lr=3e-5',
      'prompt_template=qwen_chat',
      'pack_to_max_length=false',
      'betas=[0.9,0.95]',
      'lora.r=16',
      'evaluation_inputs=["a","b"]',
      'evaluation_inputs.1=c',
      'SYSTEM=',
      'data_path=["x.json","y.json"]',
    ],
  });
  assert.equal(cfg.lr, 3e-5);
  assert.equal(cfg.prompt_template, 'qwen_chat');
  assert.equal(cfg.pack_to_max_length, false);
  assert.deepEqual(cfg.betas, [0.9, 0.95]);
  assert.equal(cfg.lora?.r, 16);
  assert.equal(cfg.lora?.lora_alpha, 16, 'a LoRA block made by an override gets the defaults');
  assert.deepEqual(cfg.evaluation_inputs, ['a', 'c']);
  assert.equal(cfg.SYSTEM, '');
  assert.deepEqual(cfg.data_path, ['x.json', 'y.json']);
  assert.equal((await loadConfig(file, { cfgOptions: ['lora=null'] })).lora, null);
});

test('--cfg-options errors name the option', async () => {
  const file = write('base2.json', JSON.stringify(SETTINGS));
  await rejectsWith(loadConfig(file, { cfgOptions: ['lerning_rate=1'] }), /--cfg-options lerning_rate=1: lerning_rate: unknown key/);
  await rejectsWith(loadConfig(file, { cfgOptions: ['lr=0'] }), /--cfg-options lr=0: lr: expected a value > 0, got 0/);
  await rejectsWith(loadConfig(file, { cfgOptions: ['lr'] }), /--cfg-options: "lr" is not KEY=VALUE/);
  await rejectsWith(loadConfig(file, { cfgOptions: ['lr.x=1'] }), /"lr\.x=1": lr is 0\.00001, not an object/);
  await rejectsWith(loadConfig(file, { cfgOptions: ['__proto__.x=1'] }), /bad key path/);
});

test('applyCfgOptions leaves the original untouched', () => {
  const raw = { lora: { r: 8 } };
  const out = applyCfgOptions(raw, parseCfgOptions(['lora.r=4']));
  assert.deepEqual(raw, { lora: { r: 8 } });
  assert.deepEqual(out, { lora: { r: 4 } });
});

test('extractCfgOptions takes XTuner\'s `--cfg-options a=1 b=2` up to the next flag', () => {
  assert.deepEqual(extractCfgOptions(['cfg.ts', '--cfg-options', 'a=1', 'b.c=x', '--seed', '3', '--cfg-options=d=4']), {
    cfgOptions: ['a=1', 'b.c=x', 'd=4'],
    rest: ['cfg.ts', '--seed', '3'],
  });
  assert.deepEqual(extractCfgOptions(['--', '--cfg-options', 'a=1']), { cfgOptions: [], rest: ['--', '--cfg-options', 'a=1'] });
});

test('the saved resolved config is JSON that loads back to the same config', async () => {
  const cfg = await loadConfig(write('full.json', JSON.stringify({ ...SETTINGS, quantization: {} })));
  const out = path.join(dir, 'work', 'config.resolved.json');
  saveResolvedConfig(cfg, out);
  assert.deepEqual(await loadConfig(out), cfg);
  assert.deepEqual(fs.readdirSync(path.dirname(out)), ['config.resolved.json'], 'no temporary file left');
});
