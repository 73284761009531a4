// What compute the machine offers, for `xtuner env` and for choosing a device: the CPU BLAS library,
// the CUDA driver (libcuda.so.1) and cuBLAS, each found (with its path) or not (with the reason).
// Probing only loads libraries through koffi inside try/catch; it never throws or crashes.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LibraryHandle } from 'koffi';
import { blasStatus } from './cpu/blas.ts';
import { cudaBackend, cudaStatus } from './cuda/index.ts';
import { kernelDirFor, toolkitOf } from './cuda/kernels.ts';
import { loadCublasLibrary, loadDriverLibrary } from './cuda/libs.ts';

export interface LibraryProbe {
  found: boolean;
  path: string | null;
  /** Why not found (or what was found lacking). */
  reason: string | null;
}

export interface BackendProbe {
  cpu: { available: true; cores: number; blas: LibraryProbe & { kernel: 'openblas' | 'js' } };
  cuda: {
    available: boolean;
    driver: LibraryProbe & { version: string | null; devices: string[] };
    cublas: LibraryProbe;
    /** Whether the CUDA backend starts here (driver, GPU and cuBLAS), or why not. */
    backend: LibraryProbe;
    /** The kernel build this driver loads (path and toolkit), or why none. */
    kernels: LibraryProbe;
  };
}

function probeKernels(available: boolean): LibraryProbe {
  if (!available) return { found: false, path: null, reason: 'no CUDA backend' };
  try {
    const dir = kernelDirFor(cudaBackend().info.cudaVersion);
    if (!fs.existsSync(path.join(dir, 'STAMP'))) return { found: false, path: null, reason: `${dir} is not built (npm run build:cuda)` };
    const toolkit = toolkitOf(dir);
    return { found: true, path: toolkit ? `${dir}, CUDA ${toolkit.join('.')}` : dir, reason: null };
  } catch (e) {
    return { found: false, path: null, reason: (e as Error).message };
  }
}

function probeDriver(): BackendProbe['cuda']['driver'] {
  let lib: LibraryHandle;
  let p: string;
  try {
    ({ lib, path: p } = loadDriverLibrary());
  } catch (e) {
    return { found: false, path: null, reason: (e as Error).message, version: null, devices: [] };
  }
  try {
    const cuInit = lib.func('int cuInit(unsigned int flags)');
    const cuDriverGetVersion = lib.func('int cuDriverGetVersion(_Out_ int *version)');
    const cuDeviceGetCount = lib.func('int cuDeviceGetCount(_Out_ int *count)');
    const cuDeviceGet = lib.func('int cuDeviceGet(_Out_ int *device, int ordinal)');
    const cuDeviceGetName = lib.func('int cuDeviceGetName(uint8_t *name, int len, int dev)');
    const ver = [0];
    cuDriverGetVersion(ver);
    const version = `${Math.floor(ver[0]! / 1000)}.${(ver[0]! % 1000) / 10}`;
    const rc = cuInit(0) as number;
    if (rc !== 0) return { found: true, path: p, reason: `cuInit failed with CUDA error ${rc}`, version, devices: [] };
    const count = [0];
    cuDeviceGetCount(count);
    const devices: string[] = [];
    for (let i = 0; i < count[0]!; i++) {
      const dev = [0];
      const name = Buffer.alloc(256);
      if (cuDeviceGet(dev, i) === 0 && cuDeviceGetName(name, 256, dev[0]) === 0) {
        devices.push(name.toString('utf8', 0, name.indexOf(0)));
      }
    }
    return { found: true, path: p, reason: count[0] ? null : 'the driver sees no GPU', version, devices };
  } catch (e) {
    return { found: true, path: p, reason: `driver API unusable: ${(e as Error).message}`, version: null, devices: [] };
  }
}

export function probeBackends(): BackendProbe {
  const blas = blasStatus();
  const driver = probeDriver();
  let cublas: LibraryProbe;
  try {
    cublas = { found: true, path: loadCublasLibrary().path, reason: null };
  } catch (e) {
    cublas = { found: false, path: null, reason: (e as Error).message };
  }
  const status = cudaStatus(); // starts the backend where it can (it is reused afterwards)
  const backend: LibraryProbe = status.available
    ? { found: true, path: status.device, reason: null }
    : { found: false, path: null, reason: status.reason };
  return {
    cpu: {
      available: true,
      cores: os.availableParallelism(),
      blas: { found: blas.path !== null, path: blas.path, reason: blas.reason, kernel: blas.path ? 'openblas' : 'js' },
    },
    cuda: { available: status.available, driver, cublas, backend, kernels: probeKernels(status.available) },
  };
}
