import test from 'node:test';
import assert from 'node:assert/strict';
import { XtunerError } from '../../src/errors.ts';
import { ConfigFields, readRope } from '../../src/models/config.ts';
import { inverseFrequencies, RopeRows, ropeTables } from '../../src/models/rope.ts';
import { f32ToHost } from '../../src/tensor/dtype.ts';

/** float32 rounding of the tables against float64 math. */
const REL_TOL = 1e-6;

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    assert.ok(Math.abs(actual[i]! - e) <= REL_TOL * Math.max(1, Math.abs(e)), `${what}[${i}]: ${actual[i]} vs ${e}`);
  }
}

// Llama 3.1 8B's settings: theta 500000, factor 8, low 1, high 4, original context 8192, head_dim 128.
const LLAMA31 = {
  rope_theta: 500000,
  max_position_embeddings: 131072,
  rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
};

test('llama3 rope scaling follows the published formula (three bands)', () => {
  const rope = readRope(new ConfigFields(LLAMA31, 'config.json'), 10000);
  const dim = 128;
  const got = inverseFrequencies(rope, dim);
  // Independent restatement of Meta's apply_scaling(freqs): per frequency, by wavelength band.
  const expected: number[] = [];
  const bands = { high: 0, low: 0, mid: 0 };
  for (let i = 0; i < dim; i += 2) {
    const freq = 1 / 500000 ** (i / dim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < 8192 / 4) {
      expected.push(freq);
      bands.high++;
    } else if (wavelen > 8192 / 1) {
      expected.push(freq / 8);
      bands.low++;
    } else {
      const smooth = (8192 / wavelen - 1) / (4 - 1);
      expected.push((1 - smooth) * (freq / 8) + smooth * freq);
      bands.mid++;
    }
  }
  assert.ok(bands.high > 0 && bands.low > 0 && bands.mid > 0, 'the test covers all three bands');
  close(got, expected, 'inv_freq');
});

test('default and linear rope; both config spellings read the same', () => {
  const v5 = readRope(new ConfigFields({ rope_parameters: { rope_type: 'linear', rope_theta: 1000, factor: 4 } }, 'c'), 10000);
  const v4 = readRope(new ConfigFields({ rope_theta: 1000, rope_scaling: { type: 'linear', factor: 4 } }, 'c'), 10000);
  assert.deepEqual(v5, v4);
  const dim = 8;
  close(inverseFrequencies(v5, dim), [0, 2, 4, 6].map((i) => 1 / 1000 ** (i / dim) / 4), 'linear');
  const def = readRope(new ConfigFields({}, 'c'), 10000);
  assert.equal(def.type, 'default');
  close(inverseFrequencies(def, dim), [0, 2, 4, 6].map((i) => 1 / 10000 ** (i / dim)), 'default');
});

test('dynamic NTK rope grows the base only beyond the trained context', () => {
  const rope = readRope(new ConfigFields({ max_position_embeddings: 100, rope_scaling: { type: 'dynamic', factor: 2 } }, 'c'), 10000);
  const dim = 8;
  close(inverseFrequencies(rope, dim, 50), [0, 2, 4, 6].map((i) => 1 / 10000 ** (i / dim)), 'short');
  const base = 10000 * ((2 * 300) / 100 - 1) ** (dim / (dim - 2));
  close(inverseFrequencies(rope, dim, 300), [0, 2, 4, 6].map((i) => 1 / base ** (i / dim)), 'long');
});

test('rope tables use cat(freqs, freqs) (rotate_half layout)', () => {
  const inv = new Float32Array([1, 0.5]);
  const { cos, sin } = ropeTables(inv, new Int32Array([0, 3]));
  close(cos, [1, 1, 1, 1, Math.cos(3), Math.cos(1.5), Math.cos(3), Math.cos(1.5)], 'cos');
  close(sin, [0, 0, 0, 0, Math.sin(3), Math.sin(1.5), Math.sin(3), Math.sin(1.5)], 'sin');
});

test('unsupported rope types and missing llama3 fields are clear errors', () => {
  assert.throws(() => readRope(new ConfigFields({ rope_scaling: { type: 'yarn', factor: 4 } }, 'cfg.json'), 1e4), (e: unknown) => e instanceof XtunerError && e.message.includes('yarn') && /llama3/.test(e.hint ?? ''));
  assert.throws(() => readRope(new ConfigFields({ rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'cfg.json'), 1e4), /low_freq_factor/);
});

test('RopeRows: the rows of ropeTables by position, in the dtype, bit for bit; grown on demand and made again for a new inv', () => {
  const dim = 8;
  const inv = inverseFrequencies(readRope(new ConfigFields({}, 'config.json'), 1e4), dim);
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const rows = new RopeRows(dtype);
    // packed-like positions, then larger ones (growth), then the first again
    for (const positions of [[0, 1, 2, 0, 1], [5, 6, 7, 8, 0, 100], [3, 2, 1]]) {
      const pos = Int32Array.from(positions);
      const { cos, sin } = ropeTables(inv, pos);
      const want = new Float32Array([...cos, ...sin]);
      assert.deepEqual(rows.gather(inv, pos), dtype === 'float32' ? want : f32ToHost(want, dtype), `${dtype} ${positions}`);
    }
    const inv2 = inv.map((x) => x / 2);
    const pos = Int32Array.from([4, 9]);
    const { cos, sin } = ropeTables(inv2, pos);
    assert.deepEqual(rows.gather(inv2, pos), f32ToHost(new Float32Array([...cos, ...sin]), dtype), `${dtype}: another inv`);
  }
});
