// Packing (XTuner's pack_to_max_length with use_varlen_attn) and collation into batches.
//
// Packing concatenates samples and cuts the stream into rows of exactly max_length; a sample cut at
// a row's end continues at the start of the next row. Each row carries cuSeqlens (boundaries of the
// pieces in it, [0, ..., max_length]) and position ids restarting at 0 for each piece, so attention
// stays inside a sample. Unlike XTuner, whose last partial row depends on its map() batch size, the
// tail is padded to a full row (pad id, label -100, its own segment) or dropped (dropLast).

import { IGNORE_INDEX, type EncodedSample } from './encode.ts';

export interface PackedRow extends EncodedSample {
  inputIds: Int32Array; // [T]
  labels: Int32Array; // [T]
  positionIds: Int32Array; // [T], 0-based within each piece
  cuSeqlens: Int32Array; // [pieces + 1], 0 ... T
}

export interface PackOptions {
  /** Drop the last, partial row instead of padding it (default false). */
  dropLast?: boolean;
  /** Input id for padding (default 0, XTuner's DEFAULT_PAD_TOKEN_INDEX). */
  padId?: number;
}

export interface PackResult {
  rows: PackedRow[];
  /** Pad tokens in the last row (0 when it was full or dropped). */
  paddingTokens: number;
  /** Tokens of the dropped partial row (dropLast). */
  droppedTokens: number;
}

export function packSamples(samples: readonly EncodedSample[], maxLength: number, options: PackOptions = {}): PackResult {
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`max_length must be a positive integer, got ${maxLength}`);
  const padId = options.padId ?? 0;
  const rows: PackedRow[] = [];
  let ids = new Int32Array(maxLength);
  let labels = new Int32Array(maxLength);
  let positions = new Int32Array(maxLength);
  let bounds = [0];
  let fill = 0;
  const emit = (): void => {
    rows.push({ inputIds: ids, labels, positionIds: positions, cuSeqlens: Int32Array.from(bounds) });
    ids = new Int32Array(maxLength);
    labels = new Int32Array(maxLength);
    positions = new Int32Array(maxLength);
    bounds = [0];
    fill = 0;
  };
  for (const s of samples) {
    let from = 0;
    while (from < s.inputIds.length) {
      const take = Math.min(maxLength - fill, s.inputIds.length - from);
      ids.set(s.inputIds.subarray(from, from + take), fill);
      labels.set(s.labels.subarray(from, from + take), fill);
      for (let k = 0; k < take; k++) positions[fill + k] = k;
      fill += take;
      from += take;
      bounds.push(fill);
      if (fill === maxLength) emit();
    }
  }
  let paddingTokens = 0;
  let droppedTokens = 0;
  if (fill > 0) {
    if (options.dropLast) droppedTokens = fill;
    else {
      paddingTokens = maxLength - fill;
      ids.fill(padId, fill);
      labels.fill(IGNORE_INDEX, fill);
      for (let k = 0; k < paddingTokens; k++) positions[fill + k] = k;
      bounds.push(maxLength);
      emit();
    }
  }
  return { rows, paddingTokens, droppedTokens };
}

/** One training step's input: B rows of T tokens, flattened row-major. */
export interface Batch {
  shape: [number, number]; // [B, T]
  inputIds: Int32Array; // [B*T]
  labels: Int32Array; // [B*T]
  positionIds: Int32Array; // [B*T]
  attentionMask: Uint8Array; // [B*T], 1 for real tokens, 0 for padding
  /** Sequence boundaries over the flattened B*T axis: attention never crosses them. */
  cuSeqlens: Int32Array;
}

/** Packed rows (all max_length long) side by side; cuSeqlens shifted by each row's offset. */
export function collatePacked(rows: readonly PackedRow[]): Batch {
  const B = rows.length;
  const T = rows[0]!.inputIds.length;
  const inputIds = new Int32Array(B * T);
  const labels = new Int32Array(B * T);
  const positionIds = new Int32Array(B * T);
  const attentionMask = new Uint8Array(B * T).fill(1);
  const cu: number[] = [0];
  rows.forEach((r, b) => {
    if (r.inputIds.length !== T) throw new RangeError(`packed rows differ in length (${r.inputIds.length} vs ${T})`);
    inputIds.set(r.inputIds, b * T);
    labels.set(r.labels, b * T);
    positionIds.set(r.positionIds, b * T);
    for (let k = 1; k < r.cuSeqlens.length; k++) cu.push(b * T + r.cuSeqlens[k]!);
  });
  return { shape: [B, T], inputIds, labels, positionIds, attentionMask, cuSeqlens: Int32Array.from(cu) };
}

/**
 * Samples right-padded to the longest in the batch (pad id 0, label -100, mask 0), as XTuner's
 * default_collate_fn; each row's padding is its own segment in cuSeqlens.
 */
export function collatePadded(samples: readonly EncodedSample[], padId = 0): Batch {
  const B = samples.length;
  const T = Math.max(...samples.map((s) => s.inputIds.length));
  const inputIds = new Int32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  const positionIds = new Int32Array(B * T);
  const attentionMask = new Uint8Array(B * T);
  const cu: number[] = [0];
  samples.forEach((s, b) => {
    const n = s.inputIds.length;
    inputIds.set(s.inputIds, b * T);
    labels.set(s.labels, b * T);
    attentionMask.fill(1, b * T, b * T + n);
    for (let t = 0; t < T; t++) positionIds[b * T + t] = t < n ? t : t - n;
    if (n > 0 && n < T) cu.push(b * T + n);
    cu.push((b + 1) * T);
  });
  return { shape: [B, T], inputIds, labels, positionIds, attentionMask, cuSeqlens: Int32Array.from(cu) };
}
