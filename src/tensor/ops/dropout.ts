// dropout(x, p, { stream, training }): zero each element with probability p and scale the rest by
// 1/(1-p) while training; identity (x itself) otherwise. The mask is a pure function of the step's
// base seed, the call's number within the step and the element index (the backends' counter-based
// `dropout` kernel), computed on the tensor's device and regenerated in the backward, never stored
// or sent from the host. A DropoutStream holds the base seed in a small device buffer, written once
// per step, and numbers the calls: nothing a dropout launch takes from the host changes from step
// to step, so a replayed launch (a CUDA graph) draws a fresh mask each step.

import type { Device } from '../../backends/index.ts';
import { XtunerError } from '../../errors.ts';
import { recordOp } from '../autograd.ts';
import { defaultRng } from '../create.ts';
import { keep } from '../scope.ts';
import type { Rng, RngState } from '../rng.ts';
import type { Tensor } from '../tensor.ts';
import { checkFloat, empty } from './util.ts';

/** What a checkpoint keeps of a DropoutStream (an exact resume, or a recomputation's replay). */
export interface DropoutStreamState {
  rng: RngState;
  /** This step's base seed (two uint32), null before the first draw. */
  seed: [number, number] | null;
  /** Dropout calls made so far in this step. */
  calls: number;
}

/**
 * The source of dropout masks: per step a 64-bit base seed drawn from `rng`, kept on each device
 * that uses it (int32 [2]); per call a number counting the step's calls from 0, so the same call
 * site in the same order gets the same number every step.
 */
export class DropoutStream {
  readonly #rng: Rng;
  #seed: [number, number] | null = null; // drawn at the first call (so creating a stream draws nothing)
  #calls = 0;
  readonly #buffers = new Map<Device, Tensor>();

  constructor(rng: Rng) {
    this.#rng = rng;
  }

  /** A new step: the next base seed (one upload per device in use, before the step's launches), calls from 0. */
  nextStep(): void {
    this.#setSeed([this.#rng.nextUint32(), this.#rng.nextUint32()]);
    this.#calls = 0;
  }

  /**
   * The next call's base-seed buffer on `device` and its number within the step. The buffer holds
   * the seed of the current step: a call's backward runs before the next nextStep().
   */
  take(device: Device): { seed: Tensor; call: number } {
    if (this.#seed === null) this.nextStep();
    let seed = this.#buffers.get(device);
    if (!seed) {
      seed = keep(empty([2], 'int32', device)).assign(Int32Array.from(this.#seed!));
      this.#buffers.set(device, seed);
    }
    const call = this.#calls;
    this.#calls = (this.#calls + 1) % 2 ** 32; // a uint32 launch constant
    return { seed, call };
  }

  getState(): DropoutStreamState {
    return { rng: this.#rng.getState(), seed: this.#seed && [this.#seed[0], this.#seed[1]], calls: this.#calls };
  }

  setState(state: DropoutStreamState): void {
    this.#rng.setState(state.rng);
    this.#setSeed(state.seed);
    this.#calls = state.calls;
  }

  #setSeed(seed: readonly [number, number] | null): void {
    if (seed?.[0] === this.#seed?.[0] && seed?.[1] === this.#seed?.[1]) return; // a recomputation's replay: same step, no upload
    this.#seed = seed && [seed[0], seed[1]];
    if (seed) for (const buf of this.#buffers.values()) buf.assign(Int32Array.from(seed));
  }
}

/** The stream of dropout calls given none (its base seeds come from defaultRng, so manualSeed sets them). */
export const defaultDropoutStream = new DropoutStream(defaultRng);

export function dropout(x: Tensor, p: number, opts: { stream?: DropoutStream; training?: boolean } = {}): Tensor {
  if (!(p >= 0 && p < 1)) throw new XtunerError(`dropout: p must be in [0, 1), got ${p}`);
  if (opts.training === false || p === 0) return x;
  const dtype = checkFloat('dropout', 'x', x);
  const { seed, call } = (opts.stream ?? defaultDropoutStream).take(x.device);
  const out = empty(x.shape, dtype, x.device);
  x.backend.dropout(x.storage, out.storage, x.size, p, seed.storage, call, dtype);
  return recordOp('dropout', out, [x], [], (_saved, dy) => {
    const dx = empty(dy.shape, dy.floatDtype, dy.device);
    dy.backend.dropout(dy.storage, dx.storage, dy.size, p, seed.storage, call, dy.floatDtype);
    return [dx];
  });
}
