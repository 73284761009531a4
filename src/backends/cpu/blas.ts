// OpenBLAS's cblas_sgemm through koffi, found at run time. Not found (or XTUNER_BLAS=js): callers use
// the JS kernel instead. Loading never throws; `blasStatus()` says what was found or why not.

import fs from 'node:fs';
import koffi from 'koffi';

export type Sgemm = (
  order: number,
  transA: number,
  transB: number,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

export const CBLAS_ROW_MAJOR = 101;
export const CBLAS_NO_TRANS = 111;
export const CBLAS_TRANS = 112;

export interface BlasStatus {
  /** The loaded library's path, or null. */
  path: string | null;
  /** Why no library is used, when path is null. */
  reason: string | null;
}

// Where Debian/Ubuntu, Fedora, Alpine and Homebrew put OpenBLAS; bare names last (loader path).
const CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/libopenblas.so.0',
  '/usr/lib/aarch64-linux-gnu/libopenblas.so.0',
  '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0',
  '/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0',
  '/usr/lib64/libopenblas.so.0',
  '/usr/lib/libopenblas.so.0',
  '/usr/local/lib/libopenblas.so.0',
  '/opt/homebrew/opt/openblas/lib/libopenblas.dylib',
  '/usr/local/opt/openblas/lib/libopenblas.dylib',
];
const BARE_NAMES = ['libopenblas.so.0', 'libopenblas.so', 'libopenblas.dylib'];

let loaded: { sgemm: Sgemm | null; status: BlasStatus } | null = null;

function tryLoad(): { sgemm: Sgemm | null; status: BlasStatus } {
  if (process.env['XTUNER_BLAS'] === 'js') {
    return { sgemm: null, status: { path: null, reason: 'XTUNER_BLAS=js asks for the JS kernel' } };
  }
  const custom = process.env['XTUNER_BLAS_LIB'];
  const paths = [...(custom ? [custom] : []), ...CANDIDATES.filter((p) => fs.existsSync(p)), ...BARE_NAMES];
  const errors: string[] = [];
  for (const p of paths) {
    try {
      const lib = koffi.load(p);
      const fn = lib.func(
        'void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)',
      ) as unknown as Sgemm;
      return { sgemm: fn, status: { path: p.includes('/') ? p : resolveLoaded(p), reason: null } };
    } catch (e) {
      errors.push(`${p}: ${(e as Error).message}`);
    }
  }
  return {
    sgemm: null,
    status: {
      path: null,
      reason: `libopenblas not found (install libopenblas0-pthread, or set XTUNER_BLAS_LIB); tried ${errors.length} paths`,
    },
  };
}

/** The full path of a library loaded by bare name, from the process's memory map (Linux). */
function resolveLoaded(name: string): string {
  try {
    const stem = name.replace(/\.so.*$|\.dylib$/, '');
    const line = fs
      .readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .find((l) => l.includes(`/${stem}`));
    if (line) return line.slice(line.indexOf('/'));
  } catch {
    // not Linux: keep the bare name
  }
  return name;
}

export function blasSgemm(): Sgemm | null {
  loaded ??= tryLoad();
  return loaded.sgemm;
}

export function blasStatus(): BlasStatus {
  loaded ??= tryLoad();
  return loaded.status;
}
