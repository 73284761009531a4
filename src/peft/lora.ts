// LoRA (Hu et al.) as PEFT implements it: y = base(x) + scaling * B(A(dropout(x))), A [r, in]
// Kaiming-uniform (a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), B [out, r] zeros, scaling
// alpha / r (alpha / sqrt(r) with rsLoRA). LoRALinear wraps any LinearLike (a Linear, or an
// NF4Linear for QLoRA) and keeps PEFT's parameter names (`<module>.base_layer.weight`,
// `<module>.lora_A.weight`, `<module>.lora_B.weight`), so adapters map to PEFT keys by a prefix.
// The adapters stay float32 (AdamW's master weights, PEFT's adapter files); over a bf16/f16 model
// the branch computes in the model's dtype, as autocast runs PEFT (one fused op: lora-branch.ts).
// injectLora() wraps the target modules of a model and freezes everything else; mergeLora()
// folds the adapters back. Not here: adapter files (adapter.ts), whole-folder merge (merge.ts).

import { XtunerError } from '../errors.ts';
import { Linear, Module, type LinearLike } from '../nn/index.ts';
import { NF4Linear } from '../quant/nf4-linear.ts';
import { add, addInPlace, defaultDropoutStream, defaultRng, dropout, keep, matmul, noGrad, scale, tensor, tidy, zeros, type DropoutStream, type Rng, type Tensor } from '../tensor/index.ts';
import type { LoraPair } from './adapter-files.ts';
import { loraBranch } from './lora-branch.ts';
import { addLoraDelta } from './merge.ts';
import { isTargetModule, moduleLoraParams, validateLoraConfig, type LoraConfig } from './config.ts';

export interface LoraLayerOptions {
  r: number;
  alpha: number;
  /** Probability of zeroing an input of the LoRA branch while training; default 0. */
  dropout?: number;
  /** alpha / sqrt(r) instead of alpha / r. */
  useRslora?: boolean;
  /** Draws A's initial values; default the engine's global generator (manualSeed). */
  rng?: Rng;
  /** The dropout masks' stream; default the engine's (defaultDropoutStream). */
  dropoutStream?: DropoutStream;
}

export class LoRALinear extends Module implements LinearLike {
  base_layer: LinearLike;
  lora_A: Linear; // weight [r, in]
  lora_B: Linear; // weight [out, r]
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropout: number;
  /**
   * Keep the adapters' copies in the compute dtype between calls (bf16/f16 models). Off over an NF4
   * base: QLoRA training is memory first (0.3 GiB at Llama-2-7B r=64); `xtuner chat` turns it on,
   * as a decoded token would otherwise cast every adapter again.
   */
  keepCasts: boolean;
  readonly #stream: DropoutStream;

  private constructor(base: LinearLike, a: Linear, b: Linear, options: LoraLayerOptions) {
    super();
    this.base_layer = base;
    this.keepCasts = !(base instanceof NF4Linear);
    this.lora_A = a;
    this.lora_B = b;
    this.r = options.r;
    this.alpha = options.alpha;
    this.scaling = options.useRslora ? options.alpha / Math.sqrt(options.r) : options.alpha / options.r;
    this.dropout = options.dropout ?? 0;
    this.#stream = options.dropoutStream ?? defaultDropoutStream;
  }

  /** Wraps `base` with freshly initialised adapters (A Kaiming-uniform, B zeros), on its device. */
  static fromBase(base: LinearLike, options: LoraLayerOptions): LoRALinear {
    checkLayerOptions(options);
    if (base instanceof LoRALinear) throw new XtunerError('LoRALinear.fromBase: the layer already has a LoRA adapter');
    const rng = options.rng ?? defaultRng;
    const { r } = options;
    const device = baseDevice(base);
    // kaiming_uniform_(a=sqrt(5)) on [r, in]: gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / in) = 1 / sqrt(in)
    const bound = 1 / Math.sqrt(base.inFeatures);
    const a = new Float32Array(r * base.inFeatures);
    for (let i = 0; i < a.length; i++) a[i] = (rng.uniform() * 2 - 1) * bound;
    const A = new Linear(keep(tensor(a, [r, base.inFeatures], { device, requiresGrad: true })));
    const B = new Linear(keep(zeros([base.outFeatures, r], { device, requiresGrad: true })));
    return new LoRALinear(base, A, B, options);
  }

  /** Wraps `base` with given matrices A [r, in] and B [out, r] (loading an adapter). */
  static withWeights(base: LinearLike, a: Float32Array, b: Float32Array, options: LoraLayerOptions): LoRALinear {
    checkLayerOptions(options);
    const { r } = options;
    if (a.length !== r * base.inFeatures || b.length !== base.outFeatures * r) {
      throw new XtunerError(
        `LoRA weights do not fit the layer [${base.outFeatures}, ${base.inFeatures}] at rank ${r}: ` +
          `A has ${a.length} values (expected ${r * base.inFeatures}), B ${b.length} (expected ${base.outFeatures * r})`,
      );
    }
    const device = baseDevice(base);
    const A = new Linear(keep(tensor(a, [r, base.inFeatures], { device, requiresGrad: true })));
    const B = new Linear(keep(tensor(b, [base.outFeatures, r], { device, requiresGrad: true })));
    return new LoRALinear(base, A, B, options);
  }

  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }

  get outFeatures(): number {
    return this.base_layer.outFeatures;
  }

  forward(x: Tensor): Tensor {
    const y = this.base_layer.forward(x);
    const p = this.training ? this.dropout : 0;
    // bf16/f16 model: the branch in y's dtype, added into y by its GEMM, as autocast runs PEFT
    if (y.dtype !== 'float32') {
      return loraBranch(y, x, this.lora_A.weight, this.lora_B.weight, { scaling: this.scaling, p, stream: this.#stream, cacheCasts: this.keepCasts });
    }
    // float32 model: generic ops, keeping the numbers the PEFT fixtures were matched with
    const h = dropout(x, p, { stream: this.#stream });
    return add(y, scale(this.lora_B.forward(this.lora_A.forward(h)), this.scaling)); // [..., r] -> [..., out]
  }

  /** A and B on the host, with the scaling (for merging on the host). */
  loraPair(): LoraPair {
    return {
      a: this.lora_A.weight.toFloat32Array(),
      b: this.lora_B.weight.toFloat32Array(),
      r: this.r,
      inFeatures: this.inFeatures,
      outFeatures: this.outFeatures,
      scaling: this.scaling,
    };
  }

  /**
   * Folds scaling * B @ A into the base weight and returns the plain layer that replaces this one:
   * the base Linear itself (updated in place, in its dtype), or for an NF4 base a new Linear of
   * the dequantised weight plus the delta (float32).
   */
  merge(): Linear {
    const base = this.base_layer;
    const shape = [this.outFeatures, this.inFeatures];
    if (base instanceof NF4Linear) {
      const w = base.dequantizedWeight();
      addLoraDelta(w, this.loraPair());
      return new Linear(keep(tensor(w, shape, { device: this.lora_A.weight.device })), base.bias);
    }
    if (base instanceof Linear) {
      // in place on the weight's device, added in the weight's dtype (as PEFT merges)
      tidy(() => noGrad(() => addInPlace(base.weight, matmul(this.lora_B.weight, this.lora_A.weight), this.scaling)));
      return base;
    }
    throw new XtunerError(`LoRALinear.merge: cannot merge into a ${base.constructor.name}`);
  }
}

function checkLayerOptions(o: LoraLayerOptions): void {
  validateLoraConfig({ r: o.r, loraAlpha: o.alpha, loraDropout: o.dropout ?? 0, targetModules: null }, 'LoRA layer');
}

function baseDevice(base: LinearLike): Tensor['device'] {
  if (base instanceof NF4Linear) return base.device;
  for (const p of base.parameters()) return p.device;
  return 'cpu';
}

/** Linear layers LoRA can wrap. */
function isWrappable(m: Module): m is LinearLike {
  return m instanceof Linear || m instanceof NF4Linear;
}

/**
 * Output heads left out of the default targets: XTuner's `find_all_linear_names` drops `lm_head`
 * and `output_layer`; InternLM2's head, `output`, it keeps (a LoRA on the head), which xtuner-ts does
 * not yet do: its chunked cross-entropy reads the head's weight itself.
 */
const OUTPUT_HEADS = new Set(['lm_head', 'output', 'output_layer']);

/**
 * XTuner's default target_modules (`find_all_linear_names`): the last name of every linear layer,
 * except the output head (InternLM2's included, see OUTPUT_HEADS).
 */
export function defaultTargetModules(model: Module): string[] {
  const names = new Set<string>();
  for (const [path, m] of model.namedModules()) {
    if (path === '' || !isWrappable(m)) continue;
    names.add(path.slice(path.lastIndexOf('.') + 1));
  }
  for (const h of OUTPUT_HEADS) names.delete(h);
  return [...names].sort();
}

export interface InjectReport {
  /** Module paths now wrapped, in model order. */
  modules: string[];
  /** The target_modules used (the default filled in). */
  targetModules: string[] | string;
  trainableParams: number;
  totalParams: number;
}

/**
 * Wraps every target module of `model` in a LoRALinear, freezes all other parameters and makes
 * the LoRA matrices trainable. Throws when a target matches no linear layer. `rng` draws the
 * initial A matrices in module order (default: the engine's global generator); the layers' dropout
 * calls share `dropoutStream` (default the engine's). target_modules null or PEFT's 'all-linear':
 * every linear layer but the head.
 */
export function injectLora(model: Module, config: LoraConfig, rng: Rng = defaultRng, dropoutStream: DropoutStream = defaultDropoutStream): InjectReport {
  validateLoraConfig(config);
  const linears = [...model.namedModules()].filter(([p, m]) => p !== '' && (isWrappable(m) || m instanceof LoRALinear));
  if (linears.some(([, m]) => m instanceof LoRALinear)) throw new XtunerError('injectLora: the model already has LoRA layers');
  const targetModules = config.targetModules === null || config.targetModules === 'all-linear' ? defaultTargetModules(model) : config.targetModules;
  checkTargetsMatch(model, targetModules, linears.map(([p]) => p));
  for (const p of model.parameters()) p.requiresGrad = false;
  const modules: string[] = [];
  for (const [path, m] of linears) {
    if (!isTargetModule(targetModules, path)) continue;
    const { r, alpha } = moduleLoraParams(config, path);
    const layer = LoRALinear.fromBase(m as LinearLike, { r, alpha, dropout: config.loraDropout, useRslora: config.useRslora ?? false, rng, dropoutStream });
    model.setSubmodule(path, layer);
    modules.push(path);
  }
  return { modules, targetModules, ...countParams(model) };
}

/** Every target names at least one linear layer; otherwise an error listing what exists. */
export function checkTargetsMatch(model: Module, targets: string[] | string, linearPaths: string[]): void {
  const available = [...new Set(linearPaths.map((p) => p.slice(p.lastIndexOf('.') + 1)))].sort().join(', ');
  const hint = `linear layers of this model: ${available || '(none)'}`;
  if (typeof targets === 'string') {
    if (!linearPaths.some((p) => isTargetModule(targets, p))) {
      throw new XtunerError(`lora target_modules '${targets}' matches no linear layer`, { hint });
    }
    return;
  }
  for (const t of targets) {
    if (linearPaths.some((p) => isTargetModule([t], p))) continue;
    const other = [...model.namedModules()].find(([p]) => p !== '' && isTargetModule([t], p));
    throw new XtunerError(
      other
        ? `lora target_modules '${t}' names a ${other[1].constructor.name} ('${other[0]}'), not a linear layer`
        : `lora target_modules '${t}' matches no module of the model`,
      { hint },
    );
  }
}

/** The LoRA layers of a model by module path. */
export function loraLayers(model: Module): Array<[string, LoRALinear]> {
  return [...model.namedModules()].filter(([, m]) => m instanceof LoRALinear) as Array<[string, LoRALinear]>;
}

/** Replaces every LoRALinear by its merged base; returns the merged module paths. */
export function mergeLora(model: Module): string[] {
  const layers = loraLayers(model);
  for (const [path, layer] of layers) {
    const merged = layer.merge();
    model.setSubmodule(path, merged);
    layer.lora_A.weight.dispose();
    layer.lora_B.weight.dispose();
    // a quantised base was dequantised into `merged`: its packed tensors are no longer used
    if (layer.base_layer instanceof NF4Linear) layer.base_layer.dispose();
  }
  return layers.map(([p]) => p);
}

/**
 * Parameters that train and all parameters (elements). A quantised weight counts as the values it
 * holds, not its packed bytes (as PEFT's print_trainable_parameters counts 4-bit weights).
 */
export function countParams(model: Module): { trainableParams: number; totalParams: number } {
  let trainableParams = 0;
  let totalParams = 0;
  for (const p of model.parameters()) {
    totalParams += p.size;
    if (p.requiresGrad) trainableParams += p.size;
  }
  for (const [, m] of model.namedModules()) if (m instanceof NF4Linear) totalParams += m.inFeatures * m.outFeatures;
  return { trainableParams, totalParams };
}
