// Base model folder + LoRA adapter folder -> a plain Hugging Face model folder (what
// `xtuner convert merge` produces): every targeted weight becomes W + scaling * B @ A, the result
// is written in the dtype asked for (sharded with an index when large), and the base's other
// files (config.json, generation_config.json, tokenizer files, remote code) are copied. Works one
// tensor at a time (B @ A through the engine's GEMM, on the CPU or the GPU: `device`), so memory
// stays at about one weight matrix; it needs no model code, only matching names. Not here: merging
// inside a live model (LoRALinear.merge in lora.ts).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../errors.ts';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.ts';
import { CheckpointReader, writeCheckpoint } from '../io/checkpoint.ts';
import { FLOAT_FILE_DTYPE, float32ToHost, hostToFloat32, type HostData, type HostTensor, type SafetensorsDtype, type WriteTensor } from '../io/safetensors.ts';
import { matmul, noGrad, tensor, tidy, zeros, type Device } from '../tensor/index.ts';
import { adapterMisfitError, readAdapterFolder, type LoraPair } from './adapter-files.ts';

export type MergeDtype = 'auto' | 'float32' | 'bfloat16' | 'float16';

export interface MergeOptions {
  /** Hugging Face model folder the adapter was trained on. */
  baseDir: string;
  /** PEFT adapter folder. */
  adapterDir: string;
  /** Output folder (created; files of an earlier merge there are replaced). */
  outDir: string;
  /** dtype of the saved float weights; 'auto' (default) keeps each weight's own dtype. */
  dtype?: MergeDtype;
  /** Largest shard in bytes; default 5 GB (transformers' default). */
  maxShardBytes?: number;
  /** Where each B @ A is computed (default cpu); the weights themselves stream through the host. */
  device?: Device;
}

export interface MergeReport {
  /** Weight files written. */
  files: string[];
  /** Module paths whose weight received an adapter. */
  mergedModules: string[];
  tensors: number;
  /** Other files copied from the base folder. */
  copied: string[];
}

/** Weight files of the base that are not copied (the merged weights replace them). */
function isWeightFile(name: string): boolean {
  return /\.(safetensors|bin|pt|pth|gguf|msgpack|h5)$/.test(name) || /\.(safetensors|bin)\.index\.json$/.test(name);
}

/**
 * W [out, in] += scaling * (B [out, r] @ A [r, in]), the product a float32 GEMM as in PEFT's
 * get_delta_weight, on `device` (the CPU backend: OpenBLAS when present).
 */
export function addLoraDelta(w: Float32Array, lora: LoraPair, device: Device = 'cpu'): void {
  const { a, b, r, inFeatures, outFeatures, scaling } = lora;
  const delta = tidy(() => noGrad(() => matmul(tensor(b, [outFeatures, r], { device }), tensor(a, [r, inFeatures], { device })).toFloat32Array()));
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(w[i]! + Math.fround(scaling * delta[i]!));
}


/** The float dtypes weights are stored in (F64 and integer tensors are copied as they are). */
const isFloat = (d: SafetensorsDtype) => d === 'F32' || d === 'BF16' || d === 'F16';

/** Merges an adapter into its base model and saves a Hugging Face folder. */
export function mergeAdapterToHf(options: MergeOptions): MergeReport {
  const { baseDir, adapterDir, outDir, dtype = 'auto' } = options;
  if (!(dtype in FLOAT_FILE_DTYPE) && dtype !== 'auto') {
    throw new XtunerError(`merge: dtype must be one of auto, float32, bfloat16, float16; got '${dtype}'`);
  }
  const out = path.resolve(outDir);
  if (out === path.resolve(baseDir) || out === path.resolve(adapterDir)) {
    throw new XtunerError(`merge: output folder ${outDir} is the base or adapter folder`, { hint: 'choose a new folder for the merged model' });
  }
  // fail before writing anything: the engine says whether the device's backend exists
  if (options.device && options.device !== 'cpu') zeros([1], { device: options.device }).dispose();
  const adapter = readAdapterFolder(adapterDir);
  const base = CheckpointReader.open(baseDir);
  try {
    checkAdapterFitsBase(adapter.modules, base, adapterDir, baseDir);
    const names = base.names();
    const outDtype = (src: SafetensorsDtype) => (dtype === 'auto' || !isFloat(src) ? src : FLOAT_FILE_DTYPE[dtype]);
    const tensors = names.map((name): readonly [string, WriteTensor] => {
      const entry = base.entry(name);
      const target = outDtype(entry.dtype);
      const lora = name.endsWith('.weight') ? adapter.modules.get(name.slice(0, -'.weight'.length)) : undefined;
      const data = (): HostData => {
        const t: HostTensor = base.read(name);
        if (!isFloat(t.dtype)) return t.data;
        if (!lora && t.dtype === target) return t.data;
        const w = t.dtype === 'F32' ? new Float32Array(t.data as Float32Array) : hostToFloat32(t);
        if (lora) addLoraDelta(w, lora, options.device);
        return float32ToHost(w, target);
      };
      return [name, { dtype: target, shape: entry.shape, data }];
    });
    fs.mkdirSync(outDir, { recursive: true });
    // an earlier model's config.json goes first and the new one is written last, so a merge cut
    // short never leaves a folder that loads (new shards beside old ones)
    fs.rmSync(path.join(outDir, 'config.json'), { force: true });
    const files = writeCheckpoint(outDir, tensors, { maxShardBytes: options.maxShardBytes });
    const copied = copyOtherFiles(baseDir, outDir, dtype);
    return { files, mergedModules: [...adapter.modules.keys()], tensors: names.length, copied };
  } finally {
    base.close();
  }
}

/** Every adapter module must be a matrix of the base with the adapter's [out, in]. */
function checkAdapterFitsBase(modules: Map<string, LoraPair>, base: CheckpointReader, adapterDir: string, baseDir: string): void {
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [mod, p] of modules) {
    const name = `${mod}.weight`;
    if (!base.has(name)) {
      missing.push(mod);
      continue;
    }
    const { shape, dtype } = base.entry(name);
    if (!isFloat(dtype)) wrong.push(`${mod}: base weight is ${dtype}, not a float matrix`);
    else if (shape.length !== 2 || shape[0] !== p.outFeatures || shape[1] !== p.inFeatures) {
      wrong.push(`${mod}: base weight [${shape.join(', ')}], adapter [${p.outFeatures}, ${p.inFeatures}]`);
    }
  }
  if (missing.length || wrong.length) throw adapterMisfitError(adapterDir, `base model ${baseDir}`, missing, wrong);
}

/** Copies the base folder's non-weight files, config.json last; records the new dtype in config.json. */
function copyOtherFiles(baseDir: string, outDir: string, dtype: MergeDtype): string[] {
  const copied: string[] = [];
  const files = fs.readdirSync(baseDir).sort((a, b) => Number(a === 'config.json') - Number(b === 'config.json'));
  for (const f of files) {
    const src = path.join(baseDir, f);
    if (isWeightFile(f) || f.startsWith('.') || !fs.statSync(src).isFile()) continue;
    if (f === 'config.json' && dtype !== 'auto') {
      const config = JSON.parse(fs.readFileSync(src, 'utf8')) as Record<string, unknown>;
      // transformers 5 writes "dtype", earlier versions "torch_dtype"
      const keys = ['dtype', 'torch_dtype'].filter((k) => k in config);
      for (const k of keys.length ? keys : ['torch_dtype']) config[k] = dtype;
      writeJsonAtomic(path.join(outDir, f), config);
    } else {
      writeFileAtomic(path.join(outDir, f), fs.readFileSync(src));
    }
    copied.push(f);
  }
  return copied;
}
