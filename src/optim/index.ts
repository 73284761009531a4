// Public surface of optimisation: AdamW, gradient clipping, the learning-rate schedule.
export { AdamW, type AdamWOptions, type AdamWScalars } from './adamw.ts';
export { clipCoefficient, clipGradNorm, gradNorm } from './clip.ts';
export { WarmupCosineSchedule, xtunerScheduleIters, type WarmupCosineOptions, type WarmupCosineState } from './schedule.ts';
