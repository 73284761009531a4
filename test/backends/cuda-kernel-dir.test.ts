// Which build folder of native/cuda a driver loads (kernelDirFor): the newest toolkit whose major
// version the driver runs, as CUDA's compatibility rules allow; a clear error when none.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { kernelDirFor } from '../../src/backends/cuda/kernels.ts';
import { XtunerError } from '../../src/errors.ts';
import { tmpDir } from '../tmp-dir.ts';

/** A native/cuda-like folder with build folders of the given toolkits (null: no TOOLKIT file). */
function root(builds: Record<string, string | null>): string {
  const dir = tmpDir('kernel-dir');
  for (const [name, toolkit] of Object.entries(builds)) {
    fs.mkdirSync(path.join(dir, name));
    if (toolkit !== null) fs.writeFileSync(path.join(dir, name, 'TOOLKIT'), `${toolkit}\n`);
  }
  fs.mkdirSync(path.join(dir, 'not-a-build'));
  return dir;
}

test('a driver gets the newest build it can load', () => {
  const dir = root({ build: '13.0', 'build-cu12': '12.4', 'build-cu11': '11.8' });
  assert.equal(kernelDirFor([13, 0], dir), path.join(dir, 'build'));
  assert.equal(kernelDirFor([13, 2], dir), path.join(dir, 'build'));
  assert.equal(kernelDirFor([12, 2], dir), path.join(dir, 'build-cu12')); // minor version compatibility: 12.4 code on a 12.2 driver
  assert.equal(kernelDirFor([11, 4], dir), path.join(dir, 'build-cu11'));
  const two = root({ build: '13.0', 'build-cu11': '11.8' });
  assert.equal(kernelDirFor([12, 8], two), path.join(two, 'build-cu11'));
});

test('no build this driver can load: an XtunerError naming the versions and both fixes', () => {
  const dir = root({ build: '13.0' });
  assert.throws(
    () => kernelDirFor([12, 4], dir),
    (e: unknown) =>
      e instanceof XtunerError &&
      /compiled with CUDA 13\.0, and this NVIDIA driver runs CUDA 12\.4 at most/.test(e.message) &&
      /update the NVIDIA driver/.test(e.hint ?? '') &&
      /CUDA_BUILD_DIR=native\/cuda\/build-cu12 scripts\/build-cuda\.sh/.test(e.hint ?? ''),
  );
});

test('an unversioned build (made before TOOLKIT files), no build at all, and XTUNER_CUDA_KERNELS', () => {
  const old = root({ build: null, 'build-cu11': '11.8' });
  assert.equal(kernelDirFor([12, 4], old), path.join(old, 'build'));
  const none = root({});
  assert.equal(kernelDirFor([13, 0], none), path.join(none, 'build')); // loading then says how to build
  const saved = process.env['XTUNER_CUDA_KERNELS'];
  process.env['XTUNER_CUDA_KERNELS'] = '/somewhere/kernels';
  try {
    assert.equal(kernelDirFor([12, 4], root({ build: '13.0' })), '/somewhere/kernels');
  } finally {
    if (saved === undefined) delete process.env['XTUNER_CUDA_KERNELS'];
    else process.env['XTUNER_CUDA_KERNELS'] = saved;
  }
});
