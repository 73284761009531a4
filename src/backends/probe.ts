// What compute the machine offers, for `xtuner env` and for choosing a device: the CPU BLAS library,
// the CUDA driver (libcuda.so.1) and cuBLAS, each found (with its path) or not (with the reason).
// Probing only loads libraries through koffi inside try/catch; it never throws or crashes.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import koffi, { type LibraryHandle } from 'koffi';
import { blasStatus } from './cpu/blas.ts';
import { cudaStatus } from './cuda/index.ts';

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
    /** Whether the CUDA backend starts here (driver, GPU, cuBLAS and built kernels), or why not. */
    backend: LibraryProbe;
  };
}

function cudaRoots(): string[] {
  const roots = [process.env['CUDA_HOME'], process.env['CUDA_PATH'], '/usr/local/cuda'];
  try {
    for (const d of fs.readdirSync('/usr/local')) if (d.startsWith('cuda-')) roots.push(path.join('/usr/local', d));
  } catch {
    // no /usr/local
  }
  return roots.filter((r): r is string => !!r);
}

/** cuBLAS in the CUDA toolkit folders, the loader path, or Python's nvidia-cublas wheels. */
function cublasCandidates(): string[] {
  const names = ['libcublas.so.13', 'libcublas.so.12', 'libcublas.so.11', 'libcublas.so'];
  const out: string[] = [];
  for (const root of cudaRoots()) {
    for (const lib of ['lib64', 'lib', 'targets/x86_64-linux/lib', 'targets/sbsa-linux/lib']) for (const n of names) out.push(path.join(root, lib, n));
  }
  // pip's nvidia-cublas wheels: <prefix>/lib/python3.X/{site,dist}-packages/nvidia/cublas/lib
  const prefixes = ['/usr', '/usr/local', process.env['VIRTUAL_ENV'], process.env['CONDA_PREFIX']].filter((p): p is string => !!p);
  for (const prefix of prefixes) {
    let pys: string[] = [];
    try {
      pys = fs.readdirSync(path.join(prefix, 'lib')).filter((d) => d.startsWith('python3'));
    } catch {
      continue;
    }
    for (const py of pys) {
      for (const sp of ['site-packages', 'dist-packages']) for (const n of names) out.push(path.join(prefix, 'lib', py, sp, 'nvidia', 'cublas', 'lib', n));
    }
  }
  return [...out.filter((p) => fs.existsSync(p)), ...names];
}

function loadFirst(candidates: string[]): { lib: LibraryHandle | null; path: string | null; error: string | null } {
  let error: string | null = null;
  for (const p of candidates) {
    try {
      return { lib: koffi.load(p), path: p, error: null };
    } catch (e) {
      error = (e as Error).message;
    }
  }
  return { lib: null, path: null, error };
}

function probeDriver(): BackendProbe['cuda']['driver'] {
  const { lib, path: p, error } = loadFirst(['libcuda.so.1', 'libcuda.so']);
  if (!lib) {
    return { found: false, path: null, reason: `libcuda.so.1 not found (no NVIDIA driver): ${error}`, version: null, devices: [] };
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
  const cublasLoad = loadFirst(cublasCandidates());
  const cublas: LibraryProbe = cublasLoad.lib
    ? { found: true, path: cublasLoad.path, reason: null }
    : { found: false, path: null, reason: `libcublas not found (install the CUDA toolkit or set CUDA_HOME): ${cublasLoad.error}` };
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
    cuda: { available: status.available, driver, cublas, backend },
  };
}
