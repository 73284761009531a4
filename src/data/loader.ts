// Batches for training, in a deterministic order that can be resumed exactly: the order of epoch e
// is a permutation seeded by (seed, e), like mmengine's DefaultSampler (seed + epoch), and the batch
// at { epoch, step } is computed directly, so resuming needs only that position.

import { collatePacked, collatePadded, type Batch, type PackedRow } from './pack.ts';
import type { EncodedSample } from './encode.ts';
import { permutation } from './rng.ts';

export interface DataPosition {
  epoch: number;
  /** Batches already taken in this epoch. */
  step: number;
}

export interface BatchLoaderOptions {
  batchSize: number;
  seed: number;
  /** Shuffle each epoch (default true). */
  shuffle?: boolean;
  /** Input id of padding in unpacked batches (default 0). */
  padId?: number;
}

export class BatchLoader {
  readonly stepsPerEpoch: number;
  private orderEpoch = -1;
  private order: Uint32Array = new Uint32Array(0);

  /** `items` are packed rows (all max_length long) or samples, which are padded per batch. */
  constructor(
    readonly items: readonly PackedRow[] | readonly EncodedSample[],
    readonly options: BatchLoaderOptions,
  ) {
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
      throw new RangeError(`batch_size must be a positive integer, got ${options.batchSize}`);
    }
    // the last batch of an epoch may be short (the dataloader does not drop it)
    this.stepsPerEpoch = Math.ceil(items.length / options.batchSize);
  }

  private get packed(): boolean {
    return this.items.length > 0 && 'cuSeqlens' in this.items[0]!;
  }

  private epochOrder(epoch: number): Uint32Array {
    if (epoch !== this.orderEpoch) {
      const n = this.items.length;
      this.order = this.options.shuffle === false ? Uint32Array.from({ length: n }, (_, i) => i) : permutation(n, this.options.seed, epoch);
      this.orderEpoch = epoch;
    }
    return this.order;
  }

  /** Indices into `items` of the batch at `pos`. */
  indicesAt(pos: DataPosition): number[] {
    if (pos.step < 0 || pos.step >= this.stepsPerEpoch) {
      throw new RangeError(`step ${pos.step} is outside epoch of ${this.stepsPerEpoch} steps`);
    }
    const order = this.epochOrder(pos.epoch);
    const start = pos.step * this.options.batchSize;
    return Array.from(order.subarray(start, Math.min(start + this.options.batchSize, order.length)));
  }

  batchAt(pos: DataPosition): Batch {
    const picked = this.indicesAt(pos).map((i) => this.items[i]!);
    return this.packed ? collatePacked(picked as PackedRow[]) : collatePadded(picked, this.options.padId ?? 0);
  }

  /** The position after `pos`. */
  next(pos: DataPosition): DataPosition {
    return pos.step + 1 < this.stepsPerEpoch ? { epoch: pos.epoch, step: pos.step + 1 } : { epoch: pos.epoch + 1, step: 0 };
  }

  /** Batches from `from` on, endlessly across epochs; each with the position to resume after it. */
  *batches(from: DataPosition = { epoch: 0, step: 0 }): Generator<{ batch: Batch; position: DataPosition; next: DataPosition }> {
    if (this.stepsPerEpoch === 0) return;
    for (let pos = from; ; pos = this.next(pos)) yield { batch: this.batchAt(pos), position: pos, next: this.next(pos) };
  }
}
