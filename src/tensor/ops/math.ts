// Pointwise math beyond the activations: exp, log, sqrt, neg, relu, sigmoid, tanh.

import type { Tensor } from '../tensor.ts';
import { unaryOp } from './unary.ts';

export const exp = (x: Tensor): Tensor => unaryOp('exp', x);
export const log = (x: Tensor): Tensor => unaryOp('log', x);
export const sqrt = (x: Tensor): Tensor => unaryOp('sqrt', x);
export const neg = (x: Tensor): Tensor => unaryOp('neg', x);
export const relu = (x: Tensor): Tensor => unaryOp('relu', x);
export const sigmoid = (x: Tensor): Tensor => unaryOp('sigmoid', x);
export const tanh = (x: Tensor): Tensor => unaryOp('tanh', x);
