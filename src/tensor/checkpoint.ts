// Activation checkpointing: checkpoint(fn, inputs) runs fn without keeping what its backward
// would need, and runs it again during the backward pass to get it. Memory of the activations
// inside fn (a decoder layer, say) is traded for a second forward. Parameters that fn reads from
// its closure receive their gradients from the recomputation, as with torch.utils.checkpoint.
// fn must compute the same thing twice: its dropout calls must come from the DropoutStreams listed
// in `streams`, whose states (the step's seed, the call count) are replayed for the recomputation
// and put back as they were after it.

import { isRecording, recordOp } from './autograd.ts';
import { isGradEnabled, withGradEnabled } from './engine.ts';
import type { DropoutStream } from './ops/dropout.ts';
import { tidy } from './scope.ts';
import type { Tensor } from './tensor.ts';

/** A fresh leaf on x's storage that requires grad when x does (or has history). */
function leafOf(x: Tensor, requiresGrad: boolean): Tensor {
  const t = x.detach();
  t.requiresGrad = requiresGrad;
  return t;
}

export function checkpoint(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[], opts: { streams?: readonly DropoutStream[] } = {}): Tensor {
  const streams = opts.streams ?? [];
  const before = streams.map((r) => r.getState());
  const needs = inputs.map((x) => isRecording([x]));
  // Run fn recording as usual, to learn whether anything inside needs a gradient, then keep only
  // the output: disposing the recorded output frees everything its graph had saved.
  const out = tidy(() => {
    const xs = inputs.map((x, i) => leafOf(x, needs[i]!));
    const y = fn(...xs);
    const recorded = y._node !== null && isGradEnabled();
    const detached = y.detach();
    return { detached, recorded };
  });
  if (!out.recorded) return out.detached;
  return recordOp('checkpoint', out.detached, inputs, inputs, (saved, dy, need) => {
    const current = streams.map((r) => r.getState());
    streams.forEach((r, i) => r.setState(before[i]!));
    const xs = saved.map((s, i) => leafOf(s, need[i]!));
    withGradEnabled(() => tidy(() => fn(...xs).backward(dy)));
    streams.forEach((r, i) => r.setState(current[i]!));
    return xs.map((x, i) => {
      const g = need[i] && x.grad ? x.grad._share() : null;
      x.dispose();
      return g;
    });
  }, true);
}
