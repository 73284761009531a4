// Builds the fake CUDA driver and cuBLAS of this folder (libcuda.c, libcublas.c: host memory as
// device memory, no kernels run) with the C compiler into a scratch folder, for tests of the CUDA
// backend's host side on machines without a GPU.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface FakeCuda {
  /** Where the libraries are (remove it after the tests). */
  dir: string;
  /** false when built, else why not (every test that needs it skips with this). */
  skip: string | false;
  /** The environment that points the backend at them, with `memBytes` of device memory. */
  env(memBytes: number): Record<string, string>;
}

export function buildFakeCuda(): FakeCuda {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-fake-cuda-'));
  const built = [
    ['libcuda.c', 'libcuda.so.1'],
    ['libcublas.c', 'libcublas.so.13'],
  ].every(([src, lib]) => spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', path.join(dir, lib!), path.join(HERE, src!)]).status === 0);
  return {
    dir,
    skip: built ? false : 'no C compiler (cc) to build the fake driver',
    env: (memBytes) => ({
      XTUNER_LIBCUDA: path.join(dir, 'libcuda.so.1'),
      XTUNER_LIBCUBLAS: path.join(dir, 'libcublas.so.13'),
      FAKE_CUDA_MEM: String(memBytes),
    }),
  };
}
