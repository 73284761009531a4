// `convert pth_to_hf`: a training checkpoint (iter_<N>/) to what the ecosystem loads. LoRA and
// QLoRA runs give a PEFT adapter folder (adapter_config.json + adapter_model.safetensors, keys
// `base_model.model.<module>.lora_A.weight`), built from the checkpoint alone; full fine-tuning
// gives a Hugging Face model folder (the base's config, the trained weights, the base's tokenizer
// files). The resolved config is saved beside as xtuner_config.json, as XTuner saves its .py.

import fs from 'node:fs';
import path from 'node:path';
import { resolvedConfigJson, type XtunerConfig } from '../config/index.ts';
import { XtunerError } from '../errors.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { resolveModelPath } from '../io/hf-hub.ts';
import { FLOAT_FILE_DTYPE, float32ToHost, hostToFloat32, type HostTensor, type WriteTensor } from '../io/safetensors.ts';
import { loadModel } from '../models/index.ts';
import { writeAdapterFolder } from '../peft/adapter-files.ts';
import { noGrad } from '../tensor/index.ts';
import { loadCheckpoint } from './checkpoint.ts';
import { methodOf, peftLoraConfig } from './setup.ts';

export interface PthToHfOptions {
  config: XtunerConfig;
  checkpointDir: string;
  outDir: string;
  /** Dtype of the saved model or adapter (XTuner: `llm.half()` unless --fp32, for both). */
  dtype: 'float32' | 'bfloat16' | 'float16';
  maxShardBytes?: number;
}

export interface PthToHfResult {
  kind: 'adapter' | 'model';
  files: string[];
}

/** Files of a model folder that are not weights or config.json: tokenizer, generation config, ... */
export function companionFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .filter((f) => f !== 'config.json' && !/\.(safetensors|bin|pt|pth|gguf|msgpack|h5)$/.test(f) && !/\.index\.json$/.test(f));
}

export async function pthToHf(opts: PthToHfOptions): Promise<PthToHfResult> {
  const { config: cfg } = opts;
  const ck = loadCheckpoint(opts.checkpointDir, { optimizer: false });
  const state = ck.state as { method?: string; lora?: { targetModules: string[] | string } | null };
  const method = methodOf(cfg);
  if (state.method !== undefined && state.method !== method) {
    throw new XtunerError(`${opts.checkpointDir} was trained with ${state.method}, but the config describes ${method}`, {
      hint: 'pass the config the checkpoint was trained with',
    });
  }
  fs.mkdirSync(opts.outDir, { recursive: true });
  let result: PthToHfResult;
  if (cfg.lora !== null) {
    const modules = loraModules(ck.trainable, opts.checkpointDir, opts.dtype);
    const targetModules = state.lora?.targetModules ?? [...new Set([...modules.keys()].map((m) => m.slice(m.lastIndexOf('.') + 1)))].sort();
    writeAdapterFolder(opts.outDir, { ...peftLoraConfig(cfg.lora), targetModules }, modules, cfg.pretrained_model_name_or_path);
    result = { kind: 'adapter', files: ['adapter_config.json', 'adapter_model.safetensors'] };
  } else {
    const baseDir = await resolveModelPath(cfg.pretrained_model_name_or_path);
    const model = await loadModel(baseDir, { dtype: 'float32' });
    const params = new Map(model.namedParameters());
    for (const name of ck.trainable.keys()) {
      if (!params.has(name)) throw new XtunerError(`${opts.checkpointDir}: weight '${name}' is not in the model ${baseDir}`, { hint: 'pass the config the checkpoint was trained with' });
    }
    for (const [name, p] of params) {
      const host = ck.trainable.get(name);
      if (!host) throw new XtunerError(`${opts.checkpointDir}: the checkpoint lacks weight '${name}' (not a full fine-tuning checkpoint?)`);
      noGrad(() => p.assign(hostToFloat32(host)));
    }
    model.saveHf(opts.outDir, { dtype: opts.dtype, ...(opts.maxShardBytes === undefined ? {} : { maxShardBytes: opts.maxShardBytes }) });
    const copied = companionFiles(baseDir);
    for (const f of copied) fs.copyFileSync(path.join(baseDir, f), path.join(opts.outDir, f));
    result = { kind: 'model', files: ['config.json', ...copied] };
  }
  writeFileAtomic(path.join(opts.outDir, 'xtuner_config.json'), resolvedConfigJson(cfg));
  return result;
}

/** `<module>.lora_A.weight` / `.lora_B.weight` of a checkpoint, paired by module. */
function loraModules(trainable: Map<string, HostTensor>, where: string, dtype: PthToHfOptions['dtype']): Map<string, { a: WriteTensor; b: WriteTensor }> {
  const halves = new Map<string, { a?: WriteTensor; b?: WriteTensor }>();
  for (const [name, t] of trainable) {
    const m = /^(.+)\.lora_([AB])\.weight$/.exec(name);
    if (!m) throw new XtunerError(`${where}: weight '${name}' is not a LoRA matrix (a full fine-tuning checkpoint?)`, { hint: 'pass the config the checkpoint was trained with' });
    const entry = halves.get(m[1]!) ?? {};
    const file = FLOAT_FILE_DTYPE[dtype];
    entry[m[2] === 'A' ? 'a' : 'b'] = { dtype: file, shape: t.shape, data: float32ToHost(hostToFloat32(t), file) };
    halves.set(m[1]!, entry);
  }
  const out = new Map<string, { a: WriteTensor; b: WriteTensor }>();
  for (const [mod, { a, b }] of halves) {
    if (!a || !b) throw new XtunerError(`${where}: module '${mod}' has lora_${a ? 'A' : 'B'} but no lora_${a ? 'B' : 'A'}`);
    out.set(mod, { a, b });
  }
  return out;
}
