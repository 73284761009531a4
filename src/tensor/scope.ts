// Scopes over tensor lifetimes and grad recording: tidy (dispose what a function created and did
// not return), keep (exempt a tensor from every scope), noGrad (run without recording a graph).

import { XtunerError } from '../errors.ts';
import { closeScope, enterNoGrad, exitNoGrad, openScope, untrack, type Disposable } from './engine.ts';
import { Tensor } from './tensor.ts';

/** Tensors reachable in a returned value: a tensor, or arrays / plain objects / Maps of them. */
function collectTensors(value: unknown, out: Tensor[], depth = 0): void {
  if (depth > 8 || value === null || typeof value !== 'object') return;
  if (value instanceof Tensor) {
    out.push(value);
  } else if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, out, depth + 1);
  }
}

/**
 * Run `fn` and dispose every tensor created inside it that is not part of its result (a tensor,
 * or arrays, plain objects and Maps holding tensors) and not kept; the result's tensors belong to
 * the enclosing scope afterwards. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = openScope();
  let result: T;
  try {
    result = fn();
  } catch (e) {
    closeScope(scope, []);
    throw e;
  }
  if (result instanceof Promise) {
    closeScope(scope, []);
    throw new XtunerError('tidy() takes a synchronous function; await outside it and tidy each step');
  }
  const survivors: Tensor[] = [];
  collectTensors(result, survivors);
  closeScope(scope, survivors as Disposable[]);
  return result;
}

/** Exempt `t` from every scope: it lives until disposed by hand. */
export function keep<T extends Tensor>(t: T): T {
  untrack(t);
  return t;
}

/** Run `fn` without recording autograd history. */
export function noGrad<T>(fn: () => T): T {
  enterNoGrad();
  try {
    return fn();
  } finally {
    exitNoGrad();
  }
}
