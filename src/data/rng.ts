// Seeded shuffling for the data pipeline (shuffle before packing, order of rows per epoch): a
// small counter-based generator, so an order is a pure function of (seed, stream) and resuming
// needs no saved generator state.

/** splitmix32: 32-bit integer hash of a counter, uniform enough for shuffling. */
function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad);
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97);
  return (x ^ (x >>> 15)) >>> 0;
}

/** A generator of uniform floats in [0, 1) for one (seed, stream) pair. */
export function seededRandom(seed: number, stream = 0): () => number {
  let state = splitmix32(splitmix32(seed | 0) ^ Math.imul(stream + 1, 0x85ebca6b));
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    return splitmix32(state) / 4294967296;
  };
}

/** A permutation of 0..n-1 (Fisher-Yates), deterministic for (seed, stream). */
export function permutation(n: number, seed: number, stream = 0): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rand = seededRandom(seed, stream);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}
