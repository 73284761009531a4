// The tensor engine's public surface (Contract 1): Tensor, creation, scopes and memory, autograd,
// random numbers, in-place helpers and the ops. Layers above import from here only.

export type { DType, FloatDType, HostArray } from './dtype.ts';
export { dtypeBytes, isFloatDType, FLOAT_DTYPES, f32ToBf16Bits, bf16BitsToF32, f32ToF16Bits, f16BitsToF32, halfToF32, f32ToHalf } from './dtype.ts';
export type { Device, AdamWHyper } from '../backends/index.ts';
export { Tensor } from './tensor.ts';
export { tensor, zeros, ones, full, zerosLike, onesLike, randn, rand, defaultRng, manualSeed, type TensorOptions, type RandomOptions } from './create.ts';
export { tidy, keep, noGrad } from './scope.ts';
export { checkpoint } from './checkpoint.ts';
export { memoryStats, resetPeakBytes, isGradEnabled } from './engine.ts';
export { Rng, type RngState } from './rng.ts';
export { assign, adamwStep, queueAdamwStep, writeAdamwState, gradNormClip, readScalars, scaleInPlace, addInPlace, fillInPlace, type AdamWEntry } from './inplace.ts';
export { sizeOf, broadcastShapes } from './shape.ts';

export { add } from './ops/add.ts';
export { sub } from './ops/sub.ts';
export { mul } from './ops/mul.ts';
export { div } from './ops/div.ts';
export { scale } from './ops/scale.ts';
export { matmul } from './ops/matmul.ts';
export { linear } from './ops/linear.ts';
export { embedding, type EmbeddingIds, type HostIds } from './ops/embedding.ts';
export { rmsNorm } from './ops/rms-norm.ts';
export { layerNorm } from './ops/layer-norm.ts';
export { silu } from './ops/silu.ts';
export { gelu, geluTanh, gelu_tanh } from './ops/gelu.ts';
export { quickGelu } from './ops/quick-gelu.ts';
export { exp, log, sqrt, neg, relu, sigmoid, tanh } from './ops/math.ts';
export { swiglu } from './ops/swiglu.ts';
export { rope } from './ops/rope.ts';
export { attention, type AttentionOptions } from './ops/attention.ts';
export { crossEntropy, type CrossEntropyOptions } from './ops/cross-entropy.ts';
export { reshape } from './ops/reshape.ts';
export { transpose } from './ops/transpose.ts';
export { permute } from './ops/permute.ts';
export { slice } from './ops/slice.ts';
export { concat } from './ops/concat.ts';
export { expand } from './ops/expand.ts';
export { sum } from './ops/sum.ts';
export { mean } from './ops/mean.ts';
export { cast, castCopy, dropCastCopies } from './ops/cast.ts';
export { softmax } from './ops/softmax.ts';
export { dropout, DropoutStream, defaultDropoutStream, type DropoutStreamState } from './ops/dropout.ts';
export { toDevice } from './ops/to-device.ts';
