// The gradient kernels that used to accumulate into zeroed storage (norm dw/db, embedding dw) now
// write their outputs whole (ops give them uninitialised storage): on the CPU backend, outputs
// that start as NaN come out equal to the same call on zeros, and equal to sums done by hand.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cpuBackend as be } from '../../src/backends/cpu/index.ts';

const rows = 3;
const cols = 4;
const x = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i + 1));
const dy = Float32Array.from({ length: rows * cols }, (_, i) => Math.cos(i * 0.5));
const w = Float32Array.from({ length: cols }, (_, i) => 1 + i / 10);
const nan = (n: number): Float32Array => new Float32Array(n).fill(NaN);

test('rmsNormBackward writes dw whole: the column sums of dy * x * rstd', () => {
  const rstd = new Float32Array(rows);
  be.rmsNorm(x, w, new Float32Array(rows * cols), rstd, rows, cols, 1e-6, 'float32', 'float32');
  const dw = nan(cols);
  be.rmsNormBackward(x, w, rstd, dy, nan(rows * cols), dw, rows, cols, 'float32', 'float32');
  for (let c = 0; c < cols; c++) {
    let s = 0;
    for (let r = 0; r < rows; r++) s += dy[r * cols + c]! * x[r * cols + c]! * rstd[r]!;
    assert.ok(Math.abs(dw[c]! - s) < 1e-6, `dw[${c}] ${dw[c]} vs ${s}`);
  }
});

test('layerNormBackward writes dw and db whole', () => {
  const mean = new Float32Array(rows);
  const rstd = new Float32Array(rows);
  be.layerNorm(x, w, null, new Float32Array(rows * cols), mean, rstd, rows, cols, 1e-5, 'float32', 'float32');
  const [dw, db] = [nan(cols), nan(cols)];
  be.layerNormBackward(x, w, mean, rstd, dy, nan(rows * cols), dw, db, rows, cols, 'float32', 'float32');
  for (let c = 0; c < cols; c++) {
    let sw = 0;
    let sb = 0;
    for (let r = 0; r < rows; r++) {
      sw += dy[r * cols + c]! * (x[r * cols + c]! - mean[r]!) * rstd[r]!;
      sb += dy[r * cols + c]!;
    }
    assert.ok(Math.abs(dw[c]! - sw) < 1e-6 && Math.abs(db[c]! - sb) < 1e-6, `column ${c}`);
  }
});

test('embeddingBackward writes dw whole: zero rows stay zero, repeated ids add up', () => {
  const ids = Int32Array.of(2, 0, 2);
  const dw = nan(4 * cols); // V = 4
  be.embeddingBackward(dy, ids, dw, rows, cols, 'float32');
  for (let c = 0; c < cols; c++) {
    assert.equal(dw[1 * cols + c], 0);
    assert.equal(dw[3 * cols + c], 0);
    assert.equal(dw[0 * cols + c], dy[1 * cols + c]);
    assert.equal(dw[2 * cols + c], Math.fround(dy[c]! + dy[2 * cols + c]!));
  }
});
