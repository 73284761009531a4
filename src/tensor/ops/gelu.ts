// gelu(x) = x * Phi(x) (exact, erf), and geluTanh, the tanh approximation (PyTorch's
// approximate='tanh', Hugging Face's gelu_pytorch_tanh / gelu_new).

import type { Tensor } from '../tensor.ts';
import { unaryOp } from './unary.ts';

export function gelu(x: Tensor): Tensor {
  return unaryOp('gelu', x);
}

export function geluTanh(x: Tensor): Tensor {
  return unaryOp('geluTanh', x);
}

/** The contract's spelling of geluTanh. */
export const gelu_tanh = geluTanh;
