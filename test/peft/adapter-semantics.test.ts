// PEFT adapters whose adapter_config.json asks for more than plain LoRA are refused, naming the key:
// loaded as plain LoRA they would compute something else. E.g. peft 0.21.0's
// tuners/lora/variants.py ALoraLinearVariant adds the branch only on the tokens from the last
// occurrence of `alora_invocation_tokens` on (none where it is absent), so plain LoRA's logits were
// 1.01 away from what peft gives.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { loadModel } from '../../src/models/index.ts';
import { loadAdapter } from '../../src/peft/adapter.ts';
import { BASE_MODEL, LORA_ADAPTER, tmpDir } from './helpers.ts';

test('LoRA variants (aLoRA, QA-LoRA, layer replication, LoRA bias, trainable tokens) are refused, naming the key', async (t) => {
  const cfg = JSON.parse(fs.readFileSync(path.join(LORA_ADAPTER, 'adapter_config.json'), 'utf8'));
  const model = await loadModel(BASE_MODEL);
  for (const [key, value] of [['alora_invocation_tokens', [997, 998, 999]], ['use_qalora', true], ['layer_replication', [[0, 1]]], ['lora_bias', true], ['trainable_token_indices', [5]]] as const) {
    const dir = tmpDir(t);
    fs.copyFileSync(path.join(LORA_ADAPTER, 'adapter_model.safetensors'), path.join(dir, 'adapter_model.safetensors'));
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, [key]: value }));
    assert.throws(() => loadAdapter(model, dir), (e: unknown) => e instanceof XtunerError && e.message.includes(`${key} is set`), key);
  }
  // their defaults (null, false, []) are plain LoRA
  const dir = tmpDir(t);
  fs.copyFileSync(path.join(LORA_ADAPTER, 'adapter_model.safetensors'), path.join(dir, 'adapter_model.safetensors'));
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, alora_invocation_tokens: null, use_qalora: false, layer_replication: null, lora_bias: false }));
  loadAdapter(model, dir);
});
