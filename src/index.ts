// The public API of the xtuner-ts package: what `import ... from 'xtuner-ts'` gives. The CLI
// (`xtuner`) is built on exactly these pieces.

export { XtunerError } from './errors.ts';

// tensors and autograd
export {
  Tensor,
  tensor,
  zeros,
  ones,
  full,
  randn,
  rand,
  manualSeed,
  tidy,
  keep,
  noGrad,
  memoryStats,
  Rng,
  type DType,
  type Device,
} from './tensor/index.ts';
export * as ops from './tensor/index.ts';
export { probeBackends } from './backends/index.ts';

// models, generation, fine-tuning
export * from './models/index.ts';
export * as nn from './nn/index.ts';
export * from './peft/index.ts';
export * from './quant/index.ts';
export * from './optim/index.ts';

// data
export * from './tokenizer/index.ts';
export { loadTrainData, encodeDataset, packSamples, collatePacked, collatePadded, BatchLoader, DATASET_FORMATS, type Batch, type PackedRow, type EncodedSample } from './data/index.ts';

// configs and the training run
export { defineConfig, loadConfig, type XtunerConfig, type XtunerConfigInput } from './config/index.ts';
export { resolveModelPath } from './io/hf-hub.ts';
export { train, type TrainOptions, type TrainResult } from './train/trainer.ts';
export { TrainStep, type TrainStepOptions, type StepBatch, type StepKind, type StepResult } from './train/step.ts';
export { pthToHf } from './train/convert.ts';
export { ChatSession } from './generate/chat-session.ts';
export { DecodingState } from './generate/decode.ts';
