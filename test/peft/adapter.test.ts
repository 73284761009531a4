import test from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { SafetensorsReader, hostToFloat32 } from '../../src/io/safetensors.ts';
import { loadModel } from '../../src/models/index.ts';
import { loadAdapter, saveAdapter } from '../../src/peft/adapter.ts';
import { injectLora, loraLayers } from '../../src/peft/lora.ts';
import { Rng } from '../../src/tensor/index.ts';
import { assertClose, BASE_MODEL, FIX, LLAMA_TARGETS, LOGITS_TOL, LORA_ADAPTER, peftParamName, readExpected, tmpDir } from './helpers.ts';

const lora = readExpected('lora');

function safetensorsLayout(file: string): Map<string, { dtype: string; shape: readonly number[] }> {
  const r = SafetensorsReader.open(file);
  try {
    return new Map(r.names().map((n) => [n, { dtype: r.entry(n).dtype, shape: r.entry(n).shape }]));
  } finally {
    r.close();
  }
}

test("loading PEFT's adapter gives its weights and the logits of PEFT's merged model", async () => {
  const model = await loadModel(BASE_MODEL);
  const loaded = loadAdapter(model, LORA_ADAPTER);
  assert.equal(loaded.modules.length, 14);
  assert.equal(loaded.config.r, 8);
  assert.equal(loaded.trainableParams, 0); // inference by default
  for (const [p, layer] of loraLayers(model)) {
    assert.deepEqual(layer.lora_A.weight.toFloat32Array(), lora.get(`after_adamw.${peftParamName(p, 'A')}`));
    assert.deepEqual(layer.lora_B.weight.toFloat32Array(), lora.get(`after_adamw.${peftParamName(p, 'B')}`));
    assert.equal(layer.scaling, 2);
  }
  // lora/merged is PEFT's merge_and_unload of exactly this state
  const merged = await loadModel(`${FIX}/lora/merged`);
  assertClose(model.forward(lora.ids).logits.toFloat32Array(), merged.forward(lora.ids).logits.toFloat32Array(), LOGITS_TOL, 'logits');
  const trainable = await loadModel(BASE_MODEL);
  assert.ok(loadAdapter(trainable, LORA_ADAPTER, { trainable: true }).trainableParams > 0);
});

test("a saved adapter has PEFT's files, key names, dtypes and config, and round-trips", async (t) => {
  const dir = tmpDir(t);
  const model = await loadModel(BASE_MODEL);
  const config = { r: 8, loraAlpha: 16, loraDropout: 0, targetModules: LLAMA_TARGETS };
  injectLora(model, config, new Rng(1));
  for (const [, l] of loraLayers(model)) l.lora_B.weight.assign(new Float32Array(l.lora_B.weight.size).map((_, i) => Math.sin(i) / 100));
  saveAdapter(model, dir, { config, baseModelNameOrPath: 'llama_forward' });
  assert.deepEqual(fs.readdirSync(dir).sort(), ['adapter_config.json', 'adapter_model.safetensors']);

  const ours = safetensorsLayout(path.join(dir, 'adapter_model.safetensors'));
  const peft = safetensorsLayout(path.join(LORA_ADAPTER, 'adapter_model.safetensors'));
  assert.deepEqual([...ours.keys()].sort(), [...peft.keys()].sort());
  for (const [k, v] of peft) assert.deepEqual(ours.get(k), v, k);

  const ourCfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
  const peftCfg = JSON.parse(fs.readFileSync(path.join(LORA_ADAPTER, 'adapter_config.json'), 'utf8'));
  for (const key of Object.keys(ourCfg)) assert.ok(key in peftCfg, `'${key}' is not a PEFT adapter_config field`);
  for (const key of ['peft_type', 'task_type', 'r', 'lora_alpha', 'lora_dropout', 'bias', 'fan_in_fan_out', 'use_rslora', 'use_dora', 'modules_to_save']) {
    assert.deepEqual(ourCfg[key], peftCfg[key], key);
  }
  assert.deepEqual([...ourCfg.target_modules].sort(), [...peftCfg.target_modules].sort());
  assert.equal(ourCfg.base_model_name_or_path, 'llama_forward');

  const back = await loadModel(BASE_MODEL);
  loadAdapter(back, dir);
  const saved = loraLayers(model);
  const restored = new Map(loraLayers(back));
  for (const [p, l] of saved) {
    assert.deepEqual(restored.get(p)!.lora_A.weight.toFloat32Array(), l.lora_A.weight.toFloat32Array());
    assert.deepEqual(restored.get(p)!.lora_B.weight.toFloat32Array(), l.lora_B.weight.toFloat32Array());
  }
  assert.deepEqual(back.forward(lora.ids).logits.toFloat32Array(), model.forward(lora.ids).logits.toFloat32Array());
  // the PEFT file holds exactly what the layer holds
  const r = SafetensorsReader.open(path.join(dir, 'adapter_model.safetensors'));
  const [p0, l0] = saved[0]!;
  assert.deepEqual(hostToFloat32(r.read(`base_model.model.${p0}.lora_B.weight`)), l0.lora_B.weight.toFloat32Array());
  r.close();
});

test('an adapter that does not fit the model is refused before anything changes', async (t) => {
  const err = (re: RegExp) => (e: unknown) => e instanceof XtunerError && re.test(e.message);
  const qwen2 = await loadModel(`${FIX}/qwen2/model`);
  assert.throws(() => loadAdapter(qwen2, LORA_ADAPTER), err(/does not fit the model: 6 with other shapes: model\.layers\.0\.mlp\.down_proj: model \[64, 160\], adapter \[64, 176\]/));
  assert.equal(loraLayers(qwen2).length, 0);
  const internlm2 = await loadModel(`${FIX}/internlm2/model`);
  assert.throws(() => loadAdapter(internlm2, LORA_ADAPTER), err(/14 module\(s\) missing: model\.layers\.0\.mlp\.down_proj/));
  const twice = await loadModel(BASE_MODEL);
  loadAdapter(twice, LORA_ADAPTER);
  assert.throws(() => loadAdapter(twice, LORA_ADAPTER), err(/a LoRALinear, not a linear layer \(it already has an adapter\)/));

  const dir = tmpDir(t);
  const bad = (name: string, edit: (cfg: Record<string, unknown>) => void) => {
    const d = path.join(dir, name);
    fs.mkdirSync(d);
    fs.copyFileSync(path.join(LORA_ADAPTER, 'adapter_model.safetensors'), path.join(d, 'adapter_model.safetensors'));
    const cfg = JSON.parse(fs.readFileSync(path.join(LORA_ADAPTER, 'adapter_config.json'), 'utf8'));
    edit(cfg);
    fs.writeFileSync(path.join(d, 'adapter_config.json'), JSON.stringify(cfg));
    return d;
  };
  const model = await loadModel(BASE_MODEL);
  assert.throws(() => loadAdapter(model, bad('rank', (c) => (c.r = 16))), err(/has rank 8 but adapter_config\.json gives r = 16/));
  assert.throws(() => loadAdapter(model, bad('alpha', (c) => (c.lora_alpha = -4))), err(/lora_alpha must be a number >= 0, got -4/));
  assert.throws(() => loadAdapter(model, bad('dora', (c) => (c.use_dora = true))), err(/DoRA adapters are not supported/));
  fs.rmSync(path.join(dir, 'rank', 'adapter_model.safetensors'));
  assert.throws(() => loadAdapter(model, path.join(dir, 'rank')), err(/adapter_model\.safetensors: not found/));
  assert.throws(() => loadAdapter(model, path.join(dir, 'none')), err(/adapter folder not found/));
  assert.equal(loraLayers(model).length, 0);
});
