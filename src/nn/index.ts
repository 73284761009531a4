// Public surface of the module layer (Contract 2).
export { Module } from './module.ts';
export { Linear, type LinearLike } from './linear.ts';
export { Embedding } from './embedding.ts';
export { RMSNorm, LayerNorm } from './norm.ts';
