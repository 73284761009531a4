// Public surface of LoRA / PEFT: layers and injection, adapter folders, merging.
export { LoRALinear, injectLora, mergeLora, loraLayers, defaultTargetModules, countParams, type LoraLayerOptions, type InjectReport } from './lora.ts';
export { saveAdapter, loadAdapter, type SaveAdapterOptions, type LoadAdapterOptions, type LoadedAdapter } from './adapter.ts';
export { mergeAdapterToHf, type MergeOptions, type MergeReport, type MergeDtype } from './merge.ts';
export { readAdapterFolder, writeAdapterFolder, peftKey, ADAPTER_WEIGHTS_FILE, type AdapterOnHost, type LoraPair } from './adapter-files.ts';
export { readAdapterConfig, validateLoraConfig, isTargetModule, moduleLoraParams, ADAPTER_CONFIG_FILE, type LoraConfig } from './config.ts';
