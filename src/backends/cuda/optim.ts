// CUDA launchers of the optimizer kernels (native/cuda/optim.cu): the global gradient norm with
// its clip coefficient (two launches: partial sums per chunk, then one block for the total) and the
// AdamW step over many tensors (one launch). Each kernel reads a table of its tensors (pointers,
// sizes, dtypes, chunk numbering; for AdamW each tensor's step lag) from device memory that stays
// put: it is uploaded again only when its contents change (other tensors, or gradients that moved),
// so a step over the same storages uploads nothing but AdamW's step state (the caller's), and a
// CUDA graph that captured the step keeps its tables alive. Nothing is read back.

import type { Backend } from '../backend.ts';
import { dtypeCode, type CudaRuntime, type CudaStorage } from './runtime.ts';

/** Elements per chunk (OPT_CHUNK of optim.cu). */
const OPT_CHUNK = 16384;
/** Table entry sizes in int32 words (NormEntry, AdamWEntry of optim.cu). */
const NORM_WORDS = 8;
const ADAMW_WORDS = 18;
const THREADS = 256;
const FINAL_THREADS = 1024;

/** A 64-bit value (a device pointer or a size, < 2^53) as two int32 words, little-endian. */
function put64(w: Int32Array, i: number, v: number): void {
  w[i] = v % 0x100000000; // wraps to int32 as the bits are
  w[i + 1] = Math.floor(v / 0x100000000);
}

/** One uploaded table: replaced tables are freed once no captured graph holds them. */
interface TableEntry {
  words: Int32Array;
  dev: CudaStorage;
  current: boolean;
  /** Captured graphs that read it. */
  holds: number;
}

/** Replaced tables no graph holds that stay on the device, newest first (a few hundred bytes each). */
const KEPT_TABLES = 8;

/**
 * A table kept on the device at a stable address, uploaded again only when its words change. A
 * graph captured over a table holds it (runtime.ts holdForGraph): a table replaced while a graph
 * holds it stays where it is until the graph goes, and serves again when its words come back (as
 * they do when another optimizer's step runs between two replays). The last KEPT_TABLES replaced
 * ones stay too, held or not: a run whose first step came between another run's steps finds its
 * table again when it captures (a capture cannot upload).
 */
class DeviceTable {
  #entries: TableEntry[] = []; // most recently used first: the current one, then replaced ones

  constructor(
    private readonly rt: CudaRuntime,
    private readonly what: string,
  ) {}

  /** The device copy of `words` (valid until the next call, or while a graph captured now lives). */
  get(words: Int32Array): CudaStorage {
    let e = this.#entries.find((x) => x.words.length === words.length && x.words.every((w, i) => w === words[i]));
    if (!e) e = { words, dev: this.rt.uploadI32(words, this.what), current: false, holds: 0 };
    this.#entries = [e, ...this.#entries.filter((x) => x !== e)];
    for (const x of this.#entries) x.current = x === e;
    // stream-ordered: launches queued before still read a freed table
    for (const x of this.#entries.slice(1 + KEPT_TABLES).filter((y) => y.holds === 0)) this.#free(x);
    const held = e;
    if (this.rt.holdForGraph(() => {
      held.holds--;
      if (!held.current && held.holds === 0 && this.#entries.indexOf(held) > KEPT_TABLES) this.#free(held);
    })) e.holds++;
    return e.dev;
  }

  #free(e: TableEntry): void {
    this.rt.free(e.dev);
    this.#entries = this.#entries.filter((x) => x !== e);
  }
}

export function optimKernels(rt: CudaRuntime): Pick<Backend<CudaStorage>, 'gradNormClip' | 'adamwStep'> {
  const normTable = new DeviceTable(rt, 'grad norm table');
  const adamwTable = new DeviceTable(rt, 'AdamW table');
  return {
    gradNormClip(xs, maxNorm, norm, coef) {
      const live = xs.filter((s) => s.size > 0);
      const table = new Int32Array(NORM_WORDS * live.length);
      let chunks = 0;
      live.forEach((s, k) => {
        const o = k * NORM_WORDS;
        put64(table, o, s.x.ptr);
        put64(table, o + 2, s.size);
        put64(table, o + 4, chunks);
        table[o + 6] = dtypeCode(s.dtype);
        chunks += Math.ceil(s.size / OPT_CHUNK);
      });
      const partials = rt.scratchF32(chunks, `grad norm partial sums (${chunks} floats)`);
      if (chunks > 0) {
        const t = normTable.get(table);
        rt.launch('optim', 'sum_squares_multi', [chunks], [THREADS], 0, 'pip', [t.ptr, live.length, partials.ptr]); // block c: chunk c
      }
      rt.launch('optim', 'grad_norm_clip', [1], [FINAL_THREADS], 0, 'plfpp', [partials.ptr, chunks, maxNorm, norm.ptr, coef.ptr]);
      rt.free(partials);
    },
    adamwStep(tensors, state, gradScale) {
      const live = tensors.filter((t) => t.size > 0);
      if (live.length === 0) return;
      const table = new Int32Array(ADAMW_WORDS * live.length);
      let chunks = 0;
      live.forEach((t, k) => {
        const o = k * ADAMW_WORDS;
        put64(table, o, t.param.ptr);
        put64(table, o + 2, t.grad.ptr);
        put64(table, o + 4, t.expAvg.ptr);
        put64(table, o + 6, t.expAvgSq.ptr);
        put64(table, o + 8, t.size);
        put64(table, o + 10, chunks);
        table[o + 12] = t.stepLag;
        const d = t.dtypes;
        table[o + 14] = dtypeCode(d.param) | (dtypeCode(d.grad) << 8) | (dtypeCode(d.expAvg) << 16) | (dtypeCode(d.expAvgSq) << 24);
        if (t.copy) {
          table[o + 15] = dtypeCode(t.copy.dtype);
          put64(table, o + 16, t.copy.to.ptr);
        }
        chunks += Math.ceil(t.size / OPT_CHUNK);
      });
      const t = adamwTable.get(table);
      rt.launch('optim', 'adamw_multi', [chunks], [THREADS], 0, 'pipp', [t.ptr, live.length, state.ptr, gradScale?.ptr ?? 0]);
    },
  };
}
