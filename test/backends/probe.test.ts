// probeBackends reports what it found and why not, without throwing, on any machine.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { getBackend, probeBackends } from '../../src/backends/index.ts';
import { XtunerError } from '../../src/errors.ts';

test('probeBackends describes CPU BLAS and CUDA with paths or reasons', () => {
  const p = probeBackends();
  assert.equal(p.cpu.available, true);
  assert.ok(p.cpu.cores >= 1);
  const blas = p.cpu.blas;
  if (blas.found) {
    assert.equal(blas.kernel, 'openblas');
    assert.ok(blas.path && blas.path.includes('openblas'), `path ${blas.path}`);
  } else {
    assert.equal(blas.kernel, 'js');
    assert.ok(blas.reason && blas.reason.length > 0);
  }
  for (const lib of [p.cuda.driver, p.cuda.cublas]) {
    assert.equal(typeof lib.found, 'boolean');
    if (!lib.found) assert.ok(lib.reason, 'a missing library has a reason');
  }
  assert.equal(p.cuda.available, p.cuda.backend.found);
  if (p.cuda.available) assert.ok(p.cuda.driver.found && p.cuda.cublas.found);
  else assert.ok(p.cuda.backend.reason);
  // the kernel build: found with its folder, or a reason
  assert.ok(p.cuda.kernels.found ? p.cuda.kernels.path : p.cuda.kernels.reason);
  if (!p.cuda.available) assert.equal(p.cuda.kernels.found, false);
});

test('OpenBLAS is found where Debian installs it', { skip: !fs.existsSync('/usr/lib/x86_64-linux-gnu/libopenblas.so.0') || process.env['XTUNER_BLAS'] === 'js' }, () => {
  assert.equal(probeBackends().cpu.blas.found, true);
});

const cuda = probeBackends().cuda;
test('asking for CUDA where it cannot start is a clear XtunerError', { skip: cuda.available ? 'CUDA works here' : false }, () => {
  assert.throws(() => getBackend('cuda'), (e: Error) => e instanceof XtunerError && e.message === cuda.backend.reason);
});
