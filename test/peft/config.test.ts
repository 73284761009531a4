import test from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { isTargetModule, moduleLoraParams, readAdapterConfig } from '../../src/peft/config.ts';
import { loadModel } from '../../src/models/index.ts';
import { injectLora } from '../../src/peft/lora.ts';
import { BASE_MODEL, LORA_ADAPTER, tmpDir } from './helpers.ts';

test("target_modules as PEFT matches them: a list by whole path or '.'-tail, a string as a full-match regex", () => {
  const p = 'model.layers.0.self_attn.q_proj';
  assert.ok(isTargetModule(['q_proj'], p));
  assert.ok(isTargetModule(['self_attn.q_proj'], p));
  assert.ok(isTargetModule([p], p));
  assert.ok(!isTargetModule(['proj'], p)); // a tail must start after a '.'
  assert.ok(!isTargetModule(['q_pro'], p));
  assert.ok(isTargetModule('.*\\.(q|v)_proj', p));
  assert.ok(!isTargetModule('q_proj', p)); // a regex must match the whole path
  assert.ok(isTargetModule('model\\.layers\\.0\\..*', p));
});

test('rank and alpha per module: patterns, scaling alpha / r, rsLoRA alpha / sqrt(r)', () => {
  const cfg = { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: null, rankPattern: { 'layers.1.mlp.down_proj': 4 }, alphaPattern: { v_proj: 2 } };
  assert.deepEqual(moduleLoraParams(cfg, 'model.layers.0.self_attn.q_proj'), { r: 8, alpha: 16, scaling: 2 });
  assert.deepEqual(moduleLoraParams(cfg, 'model.layers.1.mlp.down_proj'), { r: 4, alpha: 16, scaling: 4 });
  assert.deepEqual(moduleLoraParams(cfg, 'model.layers.0.mlp.down_proj'), { r: 8, alpha: 16, scaling: 2 });
  assert.deepEqual(moduleLoraParams(cfg, 'model.layers.3.self_attn.v_proj'), { r: 8, alpha: 2, scaling: 0.25 });
  assert.equal(moduleLoraParams({ ...cfg, useRslora: true }, 'x.q_proj').scaling, 16 / Math.sqrt(8));
});

test("PEFT's adapter_config.json reads as LoRA r 8, alpha 16 on the seven linear kinds", () => {
  const cfg = readAdapterConfig(path.join(LORA_ADAPTER, 'adapter_config.json'));
  assert.equal(cfg.r, 8);
  assert.equal(cfg.loraAlpha, 16);
  assert.equal(cfg.loraDropout, 0);
  assert.equal(cfg.useRslora, false);
  assert.deepEqual([...(cfg.targetModules as string[])].sort(), ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  assert.equal(cfg.baseModelNameOrPath, null);
});

test('broken adapter configs name the file and the field', (t) => {
  const dir = tmpDir(t);
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };
  const err = (re: RegExp) => (e: unknown) => e instanceof XtunerError && re.test(e.message);
  assert.throws(() => readAdapterConfig(path.join(dir, 'missing.json')), err(/missing\.json: not found/));
  assert.throws(() => readAdapterConfig(write('a.json', '{ r: 8')), err(/a\.json: not valid JSON/));
  assert.throws(() => readAdapterConfig(write('b.json', '{"r": "8"}')), err(/b\.json: "r" must be a number, got "8"/));
  assert.throws(() => readAdapterConfig(write('c.json', '{"r": 0}')), err(/c\.json: r \(the LoRA rank\) must be a positive integer, got 0/));
  assert.throws(() => readAdapterConfig(write('d.json', '{"peft_type": "IA3"}')), err(/peft_type is "IA3", expected "LORA"/));
  assert.throws(() => readAdapterConfig(write('e.json', '{"target_modules": 3}')), err(/"target_modules" must be a list of names or a regular expression/));
  assert.throws(() => readAdapterConfig(write('f.json', '{"modules_to_save": ["lm_head"]}')), err(/modules_to_save .* not supported/));
  assert.throws(() => readAdapterConfig(write('g.json', '{"rank_pattern": {"q_proj": -1}}')), err(/rank_pattern\['q_proj'\] must be a positive integer/));
});

test("'all-linear' is PEFT's name for every linear layer but the head", async () => {
  const model = await loadModel(BASE_MODEL);
  const report = injectLora(model, { r: 2, loraAlpha: 4, loraDropout: 0, targetModules: 'all-linear' });
  assert.equal(report.modules.length, 14);
  assert.deepEqual(report.targetModules, ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
});
