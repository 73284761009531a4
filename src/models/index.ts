// Public surface of the models layer.
export { CausalLM, type ForwardOptions, type ForwardOutput } from './causal-lm.ts';
export { loadModel, createModel, type LoadOptions, type CreateOptions, type ModelDType } from './load.ts';
export { saveHf, type SaveOptions } from './save.ts';
export { ARCHITECTURES, architectureOf, type Architecture, type Layout, type ModelType } from './architectures.ts';
export type { DecoderConfig, RopeConfig, RopeType } from './config.ts';
export type { KvCache } from './decoder.ts';
export type { IdsInput } from './inputs.ts';
