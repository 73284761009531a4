// convert pth_to_hf: a full fine-tuning checkpoint becomes a Hugging Face folder holding exactly
// the trained weights (plus config and tokenizer files); a LoRA checkpoint becomes a PEFT adapter
// with PEFT's keys; a checkpoint converted with the wrong config is refused.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateConfig, type XtunerConfig } from '../../src/config/index.ts';
import { makeAssistantRecords, recordsText } from '../../src/data/index.ts';
import { CheckpointReader } from '../../src/io/checkpoint.ts';
import { hostToFloat32 } from '../../src/io/safetensors.ts';
import { f32ToHalf, halfToF32 } from '../../src/tensor/index.ts';
import { readAdapterFolder } from '../../src/peft/adapter-files.ts';
import { loadCheckpoint } from '../../src/train/checkpoint.ts';
import { pthToHf } from '../../src/train/convert.ts';
import { train } from '../../src/train/trainer.ts';
import { buildTinyAssistant } from '../../examples/tiny-assistant/build-model.ts';
import { TINY_LLAMA } from './tiny-llama.ts';

const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-convert-'));
const MODEL = buildTinyAssistant(path.join(ROOT, 'model'), 1, TINY_LLAMA);
const DATA = path.join(ROOT, 'data.jsonl');
fs.writeFileSync(DATA, recordsText(DATA, makeAssistantRecords('c', 20)));

function config(lora: boolean): XtunerConfig {
  return validateConfig(
    {
      pretrained_model_name_or_path: MODEL,
      data_path: DATA,
      dataset_format: 'openai',
      prompt_template: 'internlm2_chat',
      max_length: 64,
      accumulative_counts: 1,
      max_iters: 2,
      lr: 1e-3,
      evaluation_inputs: [],
      lora: lora ? { r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'] } : null,
      device: 'cpu',
    },
    'test config',
  );
}

async function trained(lora: boolean): Promise<string> {
  const r = await train({ config: config(lora), workDir: path.join(ROOT, lora ? 'lora' : 'full'), out: { write: () => true } });
  return r.checkpoint!;
}

test('full fine-tuning: a Hugging Face folder with exactly the trained weights', async () => {
  const ck = await trained(false);
  const out = path.join(ROOT, 'hf-full');
  const result = await pthToHf({ config: config(false), checkpointDir: ck, outDir: out, dtype: 'float32' });
  assert.equal(result.kind, 'model');
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.model', 'tokenizer_config.json', 'xtuner_config.json']) {
    assert.ok(fs.existsSync(path.join(out, f)), f);
  }
  const weights = loadCheckpoint(ck).trainable;
  const saved = CheckpointReader.open(out);
  try {
    assert.deepEqual(saved.names().sort(), [...weights.keys()].sort());
    for (const [name, t] of weights) assert.deepEqual(hostToFloat32(saved.read(name)), hostToFloat32(t), name);
  } finally {
    saved.close();
  }
  // ...and they are not the base weights: training changed them.
  const base = CheckpointReader.open(MODEL);
  try {
    const name = 'model.layers.0.mlp.down_proj.weight';
    assert.notDeepEqual(hostToFloat32(base.read(name)), hostToFloat32(weights.get(name)!));
  } finally {
    base.close();
  }
});

test('LoRA: a PEFT adapter with PEFT key names and the trained matrices', async () => {
  const ck = await trained(true);
  const out = path.join(ROOT, 'adapter');
  assert.equal((await pthToHf({ config: config(true), checkpointDir: ck, outDir: out, dtype: 'float16' })).kind, 'adapter');
  const adapter = readAdapterFolder(out);
  assert.deepEqual([...adapter.modules.keys()], ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj']);
  assert.equal(adapter.config.r, 4);
  assert.equal(adapter.config.loraAlpha, 8);
  const weights = loadCheckpoint(ck).trainable;
  const q = adapter.modules.get('model.layers.0.self_attn.q_proj')!;
  // float16, as XTuner's pth_to_hf saves the adapter (llm.half() unless --fp32)
  const half = (name: string) => halfToF32(f32ToHalf(hostToFloat32(weights.get(name)!), 'float16'), 'float16');
  assert.deepEqual(q.a, half('model.layers.0.self_attn.q_proj.lora_A.weight'));
  assert.deepEqual(q.b, half('model.layers.0.self_attn.q_proj.lora_B.weight'));
  assert.ok(q.b.some((v) => v !== 0), 'B trained away from its zero init');
  assert.equal(q.scaling, 2);
  // --fp32: the trained float32 matrices as they are
  const out32 = path.join(ROOT, 'adapter32');
  await pthToHf({ config: config(true), checkpointDir: ck, outDir: out32, dtype: 'float32' });
  assert.deepEqual(readAdapterFolder(out32).modules.get('model.layers.0.self_attn.q_proj')!.a, hostToFloat32(weights.get('model.layers.0.self_attn.q_proj.lora_A.weight')!));

  await assert.rejects(
    pthToHf({ config: config(false), checkpointDir: ck, outDir: path.join(ROOT, 'wrong'), dtype: 'float32' }),
    /was trained with lora, but the config describes full/,
  );
});
