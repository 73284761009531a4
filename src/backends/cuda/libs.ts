// Finding the NVIDIA libraries at run time: the driver (libcuda.so.1, installed with the GPU
// driver) and cuBLAS (CUDA toolkit, or Python's nvidia-* wheels). Searched in CUDA_HOME/CUDA_PATH,
// /usr/local/cuda*, the loader path and the site-packages of the usual Python installs.
// Not found is an XtunerError that names what was looked for and where.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import koffi, { type LibraryHandle } from 'koffi';
import { XtunerError } from '../../errors.ts';

export interface LoadedLibrary {
  lib: LibraryHandle;
  path: string;
}

/** CUDA toolkit roots: CUDA_HOME, CUDA_PATH, /usr/local/cuda, /usr/local/cuda-* (newest first). */
export function cudaRoots(): string[] {
  const roots = [process.env['CUDA_HOME'], process.env['CUDA_PATH'], '/usr/local/cuda'];
  try {
    const versions = fs.readdirSync('/usr/local').filter((d) => /^cuda-\d/.test(d));
    versions.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
    roots.push(...versions.map((d) => path.join('/usr/local', d)));
  } catch {
    // no /usr/local
  }
  return [...new Set(roots.filter((r): r is string => !!r))];
}

/** site-packages/nvidia folders of the Python installs we know of (venv, conda, user, system). */
function pythonNvidiaDirs(): string[] {
  const prefixes = [process.env['VIRTUAL_ENV'], process.env['CONDA_PREFIX'], path.join(os.homedir(), '.local'), '/usr/local', '/usr', '/opt/conda'];
  const out: string[] = [];
  for (const prefix of prefixes) {
    if (!prefix) continue;
    const lib = path.join(prefix, 'lib');
    let entries: string[];
    try {
      entries = fs.readdirSync(lib).filter((d) => d.startsWith('python3'));
    } catch {
      continue;
    }
    for (const py of entries) {
      for (const sp of ['site-packages', 'dist-packages']) out.push(path.join(lib, py, sp, 'nvidia'));
    }
  }
  return out.filter((d) => fs.existsSync(d));
}

/** Folders that may hold CUDA toolkit libraries, most specific first. */
export function cudaLibraryDirs(): string[] {
  const dirs: string[] = [];
  const target = process.arch === 'arm64' ? 'sbsa-linux' : 'x86_64-linux'; // arm64: Grace Hopper and other Arm servers
  for (const root of cudaRoots()) dirs.push(path.join(root, 'lib64'), path.join(root, 'targets', target, 'lib'), path.join(root, 'lib'));
  // wheels: nvidia/cu13/lib (CUDA 13 layout), nvidia/cublas/lib (CUDA 12 layout)
  for (const nv of pythonNvidiaDirs()) dirs.push(path.join(nv, 'cu13', 'lib'), path.join(nv, 'cublas', 'lib'));
  return dirs.filter((d) => fs.existsSync(d));
}

/**
 * Load the first of `names` found in `dirs`, then by bare name from the loader path. `before` runs
 * with a candidate's folder just before it is loaded.
 */
function loadFromDirs(
  names: readonly string[],
  dirs: readonly string[],
  before: (dir: string) => void = () => {},
): { loaded: LoadedLibrary | null; tried: string[] } {
  const tried: string[] = [];
  const candidates = [...dirs.flatMap((d) => names.map((n) => path.join(d, n))).filter((p) => fs.existsSync(p)), ...names];
  for (const p of candidates) {
    try {
      if (p.includes('/')) before(path.dirname(p));
      return { loaded: { lib: koffi.load(p), path: p }, tried };
    } catch (e) {
      tried.push(`${p} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  return { loaded: null, tried };
}

/** The CUDA driver library; XTUNER_LIBCUDA names one explicitly. */
export function loadDriverLibrary(): LoadedLibrary {
  const explicit = process.env['XTUNER_LIBCUDA'];
  const names = explicit ? [explicit] : ['libcuda.so.1', 'libcuda.so'];
  const dirs = explicit ? [] : ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib/wsl/lib', '/usr/local/nvidia/lib64'];
  const { loaded, tried } = loadFromDirs(names, dirs);
  if (loaded) return loaded;
  throw new XtunerError(`no CUDA driver: ${names.join(' / ')} could not be loaded (${tried.at(-1) ?? 'no candidates'})`, {
    hint: 'install the NVIDIA driver (>= 525), or run on the CPU (--device cpu, or device: \'cpu\' in a config)',
  });
}

const CUBLAS_NAMES = ['libcublas.so.13', 'libcublas.so.12'];

/**
 * cuBLAS; XTUNER_LIBCUBLAS names one explicitly. Its companion libcublasLt is loaded from the same
 * folder first, so the loader resolves cuBLAS's dependency on it even where that folder is not on
 * the loader path.
 */
export function loadCublasLibrary(): LoadedLibrary {
  const explicit = process.env['XTUNER_LIBCUBLAS'];
  const { loaded, tried } = loadFromDirs(explicit ? [explicit] : CUBLAS_NAMES, explicit ? [] : cudaLibraryDirs(), preloadCublasLt);
  if (!loaded) {
    throw new XtunerError(`cuBLAS not found: ${CUBLAS_NAMES.join(' / ')} (tried ${tried.join('; ') || 'no candidate files'})`, {
      hint: 'install the CUDA toolkit (or `pip install nvidia-cublas-cu12`) and set CUDA_HOME, or XTUNER_LIBCUBLAS=/path/to/libcublas.so',
    });
  }
  return loaded;
}

/** Preload libcublasLt from `cublasDir` (no-op when absent). */
function preloadCublasLt(cublasDir: string): void {
  for (const n of ['libcublasLt.so.13', 'libcublasLt.so.12']) {
    const p = path.join(cublasDir, n);
    if (!fs.existsSync(p)) continue;
    try {
      koffi.load(p);
      return;
    } catch {
      // let cuBLAS's own loading report the problem
    }
  }
}
