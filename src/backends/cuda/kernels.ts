// The compiled kernels: one fatbin per native/cuda/<file>.cu in native/cuda/build/ (or the folder
// XTUNER_CUDA_KERNELS names), loaded on first use; functions looked up by their C name and cached.
// Beside each fatbin, <file>.params lists every kernel's parameter kinds (from the PTX); the first
// launch of each kernel is checked against it, so a launcher that passes the wrong arguments fails
// with a plain error instead of corrupting memory. A missing build says how to build it.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XtunerError } from '../../errors.ts';
import type { CudaDriver } from './driver.ts';

/** The kernel source files (native/cuda/<module>.cu). */
export type KernelModule = 'elementwise' | 'dropout' | 'norm' | 'softmax' | 'rope' | 'embedding' | 'cross-entropy' | 'attention' | 'attention-mma' | 'optim' | 'nf4';

export type KernelArg = number | bigint | Buffer;

/** native/cuda/build from src/backends/cuda/ and from dist/backends/cuda/ alike. */
export function kernelDir(): string {
  return process.env['XTUNER_CUDA_KERNELS'] ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../native/cuda/build');
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
      const file = path.join(kernelDir(), `${m}.fatbin`);
      const paramsFile = path.join(kernelDir(), `${m}.params`);
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
