// The config layer's public face: the schema and its types, defineConfig, loading with
// --cfg-options, the built-in library, and saving the resolved config.

export {
  configSchema,
  loraSchema,
  quantizationSchema,
  CONFIG_KEYS,
  DEFAULT_EVALUATION_INPUTS,
  PROMPT_TEMPLATE_NAMES,
  type XtunerConfig,
  type XtunerConfigInput,
  type LoraSettings,
  type QuantizationSettings,
} from './schema.ts';
export { DATASET_FORMATS, type DatasetFormat } from '../data/formats.ts';
export { defineConfig, loadConfig, readConfigFile, validateConfig, CONFIG_EXTENSIONS, type LoadConfigOptions } from './load.ts';
export { applyCfgOptions, extractCfgOptions, parseCfgOptions, type CfgOverride } from './cfg-options.ts';
export {
  CONFIGS_DIR,
  copyBuiltinConfig,
  copyName,
  findBuiltinConfig,
  listBuiltinConfigs,
  resolveConfigPath,
  type BuiltinConfig,
} from './library.ts';
export { resolvedConfigJson, saveResolvedConfig } from './save.ts';
export { closestMatch, didYouMean, editDistance } from '../did-you-mean.ts';
// XTuner's SYSTEM_TEMPLATE presets (owned by the tokenizer layer), for `SYSTEM: SYSTEM_TEMPLATE.alpaca`.
export { SYSTEM_TEMPLATE } from '../tokenizer/templates.ts';
