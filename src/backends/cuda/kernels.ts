// The compiled kernels: one fatbin per native/cuda/<file>.cu in a build folder, loaded on first use;
// functions looked up by their C name and cached. Beside each fatbin, <file>.params lists every
// kernel's parameter kinds (from the PTX); the first launch of each kernel is checked against it, so
// a launcher that passes the wrong arguments fails with a plain error instead of corrupting memory.
// A missing build says how to build it.
// Build folders: native/cuda/build (the current nvcc) and native/cuda/build-cu<N> (an older CUDA
// toolkit, for older drivers), each with a TOOLKIT file (scripts/build-cuda.sh). Machine code of
// toolkit M.x loads on a driver of CUDA M.0 or newer only (CUDA 13 needs driver >= 580), so a
// driver gets the newest build it can load (kernelDirFor); XTUNER_CUDA_KERNELS names a folder.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XtunerError } from '../../errors.ts';
import type { CudaDriver } from './driver.ts';

/** The kernel source files (native/cuda/<module>.cu). */
export type KernelModule = 'elementwise' | 'dropout' | 'norm' | 'softmax' | 'rope' | 'embedding' | 'cross-entropy' | 'attention' | 'attention-mma' | 'optim' | 'nf4' | 'sampling';

export type KernelArg = number | bigint | Buffer;

/** native/cuda from src/backends/cuda/ and from dist/backends/cuda/ alike. */
const NATIVE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../native/cuda');

/** The main build folder (native/cuda/build, or XTUNER_CUDA_KERNELS): the one tools and tests read. */
export function kernelDir(): string {
  return process.env['XTUNER_CUDA_KERNELS'] ?? path.join(NATIVE, 'build');
}

/** The CUDA version (major, minor) a build folder was compiled with, from its TOOLKIT file; null when it has none. */
export function toolkitOf(dir: string): [number, number] | null {
  const file = path.join(dir, 'TOOLKIT');
  if (!fs.existsSync(file)) return null;
  const m = /^(\d+)\.(\d+)/.exec(fs.readFileSync(file, 'utf8').trim());
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/**
 * The kernel folder for a driver of CUDA version `driver` (major, minor): XTUNER_CUDA_KERNELS when
 * set; else, of the build folders under `root` (build, build-*), the one of the newest toolkit whose
 * major the driver runs; a folder without a TOOLKIT file (an older build) is taken as it is.
 */
export function kernelDirFor(driver: readonly [number, number], root = NATIVE): string {
  const named = process.env['XTUNER_CUDA_KERNELS'];
  if (named) return named;
  const builds = fs.existsSync(root) ? fs.readdirSync(root).filter((d) => /^build(-|$)/.test(d)).sort() : [];
  const known = builds.map((d) => ({ dir: path.join(root, d), toolkit: toolkitOf(path.join(root, d)) }));
  const unversioned = known.find((b) => b.toolkit === null && b.dir === path.join(root, 'build'));
  if (unversioned) return unversioned.dir;
  const usable = known.filter((b) => b.toolkit !== null && b.toolkit[0] <= driver[0]).sort((a, b) => b.toolkit![0] - a.toolkit![0] || b.toolkit![1] - a.toolkit![1]);
  if (usable.length > 0) return usable[0]!.dir;
  const built = known.filter((b) => b.toolkit !== null);
  if (built.length === 0) return path.join(root, 'build'); // nothing built: module() says how to build
  throw new XtunerError(
    `the CUDA kernels here were compiled with CUDA ${built.map((b) => b.toolkit!.join('.')).join(', ')}, and this NVIDIA driver runs CUDA ${driver.join('.')} at most`,
    {
      hint:
        'update the NVIDIA driver (CUDA 13 needs >= 580, CUDA 12 >= 525), or build kernels for this one with an older toolkit: ' +
        'NVCC=/path/to/nvcc CUDA_BUILD_DIR=native/cuda/build-cu12 scripts/build-cuda.sh',
    },
  );
}

export interface Kernel {
  readonly fn: bigint;
  readonly name: string;
  /** Parameter kinds from the build (8 = 8-byte, i = int32, f = float32, s<N> = struct). */
  readonly params: string;
  checked: boolean;
}

/** A launch signature (p, l, i, f, s) in the build's terms, given the actual arguments. */
function paramKinds(sig: string, args: readonly KernelArg[]): string {
  let out = '';
  for (let i = 0; i < sig.length; i++) {
    const c = sig[i]!;
    out += c === 'p' || c === 'l' ? '8' : c === 's' ? `s${(args[i] as Buffer).length}` : c;
  }
  return out;
}

export class Kernels {
  private readonly modules = new Map<KernelModule, { mod: bigint; params: Map<string, string> }>();
  private readonly fns = new Map<string, Kernel>();

  constructor(private readonly driver: CudaDriver) {}

  get(module: KernelModule, name: string): Kernel {
    let k = this.fns.get(name);
    if (!k) {
      const m = this.module(module);
      const params = m.params.get(name);
      if (params === undefined) throw new Error(`CUDA kernel ${name} is not in ${module}.params: rebuild with scripts/build-cuda.sh`);
      k = { fn: this.driver.getFunction(m.mod, name), name, params, checked: false };
      this.fns.set(name, k);
    }
    return k;
  }

  /** Throws when a launch's arguments do not match the kernel's parameters. */
  verify(k: Kernel, sig: string, args: readonly KernelArg[]): void {
    const got = paramKinds(sig, args);
    if (got !== k.params) throw new Error(`CUDA launch of ${k.name}: arguments '${got}' do not match its parameters '${k.params}'`);
    k.checked = true;
  }

  private module(m: KernelModule): { mod: bigint; params: Map<string, string> } {
    let entry = this.modules.get(m);
    if (entry === undefined) {
      const dir = kernelDirFor(this.driver.device.cudaVersion);
      const file = path.join(dir, `${m}.fatbin`);
      const paramsFile = path.join(dir, `${m}.params`);
      if (!fs.existsSync(file) || !fs.existsSync(paramsFile)) {
        throw new XtunerError(`CUDA kernels not built: ${fs.existsSync(file) ? paramsFile : file} is missing`, {
          hint: 'run `npm run build:cuda` (needs nvcc from the CUDA toolkit), or set XTUNER_CUDA_KERNELS to a folder of built kernels',
        });
      }
      const params = new Map<string, string>();
      for (const line of fs.readFileSync(paramsFile, 'utf8').split('\n')) {
        const [name, kinds] = line.trim().split(/\s+/);
        if (name) params.set(name, kinds ?? '');
      }
      entry = { mod: this.driver.loadModule(fs.readFileSync(file), file), params };
      this.modules.set(m, entry);
    }
    return entry;
  }
}
