import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import {
  CONFIGS_DIR,
  copyBuiltinConfig,
  listBuiltinConfigs,
  loadConfig,
  resolveConfigPath,
  type XtunerConfig,
} from '../../src/config/index.ts';
import { tmpDir } from '../tmp-dir.ts';

const ALPACA_SYSTEM = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n';

// Transcribed by hand from XTuner's configs of these names (PART 1 settings and PART 2 model/LoRA),
// or, for names XTuner lacks, from the configs each one's header cites.
const XTUNER_VALUES: Record<string, Partial<XtunerConfig> & { method: 'qlora' | 'lora' | 'full' }> = {
  internlm2_chat_1_8b_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b', prompt_template: 'internlm2_chat', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  internlm2_chat_1_8b_lora_alpaca_e3: { method: 'lora', pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b', prompt_template: 'internlm2_chat', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  internlm2_chat_1_8b_full_alpaca_e3: { method: 'full', pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b', prompt_template: 'internlm2_chat', lr: 2e-5, accumulative_counts: 16, max_epochs: 3 },
  internlm2_1_8b_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'internlm/internlm2-1_8b', prompt_template: 'default', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  internlm2_chat_7b_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'internlm/internlm2-chat-7b', prompt_template: 'internlm2_chat', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  internlm2_5_chat_7b_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'internlm/internlm2_5-7b-chat', prompt_template: 'internlm2_chat', lr: 2e-4, accumulative_counts: 1, max_epochs: 3 },
  qwen2_5_0_5b_instruct_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'Qwen/Qwen2.5-0.5B-Instruct', prompt_template: 'qwen_chat', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  qwen2_5_1_5b_instruct_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'Qwen/Qwen2.5-1.5B-Instruct', prompt_template: 'qwen_chat', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  qwen2_5_7b_instruct_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'Qwen/Qwen2.5-7B-Instruct', prompt_template: 'qwen_chat', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  llama3_8b_instruct_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'meta-llama/Meta-Llama-3-8B-Instruct', prompt_template: 'llama3_chat', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  mistral_7b_qlora_alpaca_e3: { method: 'qlora', pretrained_model_name_or_path: 'mistralai/Mistral-7B-v0.1', prompt_template: 'mistral', lr: 2e-4, accumulative_counts: 16, max_epochs: 3 },
  internlm2_chat_1_8b_qlora_self_cognition_e3: { method: 'qlora', pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b', dataset_format: 'openai', max_length: 1024, save_steps: 300, save_total_limit: 3, evaluation_freq: 300, evaluation_inputs: ['请你介绍一下你自己', '你是谁', '你是我的小助手吗'] },
  internlm2_chat_1_8b_qlora_custom_sft_e1: { method: 'qlora', pretrained_model_name_or_path: 'internlm/internlm2-chat-1_8b', prompt_template: 'internlm2_chat', dataset_format: 'openai', max_epochs: 1, SYSTEM: '' },
  internlm2_1_8b_full_custom_pretrain_e1: { method: 'full', pretrained_model_name_or_path: 'internlm/internlm2-1_8b', prompt_template: null, dataset_format: 'pretrain', shuffle_before_pack: false, lr: 2e-5, max_epochs: 1, evaluation_inputs: ['上海是', 'Shanghai is'] },
};

test('every shipped config loads and validates, and is named as XTuner names configs', async () => {
  const all = listBuiltinConfigs();
  assert.ok(all.length >= 15);
  for (const { name, path: file } of all) {
    assert.match(name, /^[a-z0-9_]+_(qlora|lora|full)_[a-z0-9_]+_e\d+$/, name);
    const cfg = await loadConfig(file);
    const method = name.includes('_qlora_') ? 'qlora' : name.includes('_lora_') ? 'lora' : 'full';
    assert.equal(cfg.lora !== null, method !== 'full', `${name}: lora`);
    assert.equal(cfg.quantization !== null, method === 'qlora', `${name}: quantization`);
    assert.equal(cfg.max_epochs, Number(/_e(\d+)$/.exec(name)![1]), `${name}: epochs in the name`);
    // Each file is self-contained, with only a type import (so a copy loads anywhere).
    const text = fs.readFileSync(file, 'utf8');
    assert.deepEqual(text.match(/^import .*$/gm), ["import type { XtunerConfigInput } from '../src/config/index.ts';"], name);
  }
});

test('the shipped configs carry XTuner\'s values', async () => {
  const names = new Set(listBuiltinConfigs().map((c) => c.name));
  for (const [name, { method, ...expected }] of Object.entries(XTUNER_VALUES)) {
    assert.ok(names.has(name), `missing config ${name}`);
    const cfg = await loadConfig(path.join(CONFIGS_DIR, `${name}.ts`));
    for (const [key, value] of Object.entries(expected)) assert.deepEqual(cfg[key as keyof XtunerConfig], value, `${name}: ${key}`);
    if (method !== 'full') assert.deepEqual(cfg.lora, { r: 64, lora_alpha: 16, lora_dropout: 0.1, bias: 'none', task_type: 'CAUSAL_LM' }, name);
    if (name.endsWith('_alpaca_e3')) {
      assert.equal(cfg.data_path, 'tatsu-lab/alpaca', name);
      assert.equal(cfg.dataset_format, 'alpaca', name);
      assert.equal(cfg.SYSTEM, ALPACA_SYSTEM, name);
      assert.equal(cfg.max_length, 2048, name);
      assert.equal(cfg.save_steps, 500, name);
    }
  }
});

test('the offline demo config trains the tiny model of examples/tiny-assistant on the CPU', async () => {
  const cfg = await loadConfig(path.join(CONFIGS_DIR, 'tiny_llama_lora_self_cognition_e1.ts'));
  assert.equal(cfg.pretrained_model_name_or_path, 'examples/tiny-assistant');
  assert.equal(cfg.device, 'cpu');
  assert.equal(cfg.quantization, null);
  assert.ok(cfg.lora !== null);
  assert.ok(cfg.max_iters !== undefined && cfg.max_iters <= 200);
});

test('a config argument is a file or a built-in name; a misspelt name gets a suggestion', () => {
  const file = path.join(CONFIGS_DIR, 'internlm2_chat_1_8b_qlora_alpaca_e3.ts');
  assert.equal(resolveConfigPath('internlm2_chat_1_8b_qlora_alpaca_e3'), file);
  assert.equal(resolveConfigPath(path.relative(process.cwd(), file)), file);
  assert.throws(() => resolveConfigPath('internlm2_chat_1_8b_qlora_alpaca_e2'), (err: unknown) => {
    assert.ok(err instanceof XtunerError);
    assert.match(err.message, /no built-in config named "internlm2_chat_1_8b_qlora_alpaca_e2" \(did you mean "internlm2_chat_1_8b_qlora_alpaca_e3"\?\)/);
    return true;
  });
  assert.throws(() => resolveConfigPath('my/config.ts'), /config my\/config\.ts does not exist/);
});

test('copy-cfg writes <name>_copy.ts that loads anywhere to the same config, and does not overwrite', async () => {
  const dir = path.join(tmpDir(), 'new', 'folder');
  const dest = copyBuiltinConfig('internlm2_chat_1_8b_qlora_alpaca_e3', dir);
  assert.equal(dest, path.join(dir, 'internlm2_chat_1_8b_qlora_alpaca_e3_copy.ts'));
  const text = fs.readFileSync(dest, 'utf8');
  assert.match(text, /^import type \{ XtunerConfigInput \} from 'xtuner-ts';$/m);
  assert.deepEqual(await loadConfig(dest), await loadConfig(path.join(CONFIGS_DIR, 'internlm2_chat_1_8b_qlora_alpaca_e3.ts')));

  fs.writeFileSync(dest, '// my edits\n');
  assert.throws(() => copyBuiltinConfig('internlm2_chat_1_8b_qlora_alpaca_e3', dir), /already exists/);
  assert.equal(fs.readFileSync(dest, 'utf8'), '// my edits\n');
  copyBuiltinConfig('internlm2_chat_1_8b_qlora_alpaca_e3', dir, { force: true });
  assert.equal(fs.readFileSync(dest, 'utf8'), text);
});
