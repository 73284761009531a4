// The compiled kernels: one fatbin per native/cuda/<file>.cu in native/cuda/build/ (or the folder
// XTUNER_CUDA_KERNELS names), loaded on first use; functions looked up by their C name and cached.
// A missing build is an XtunerError saying how to build it.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XtunerError } from '../../errors.ts';
import type { CudaDriver } from './driver.ts';

/** The kernel source files (native/cuda/<module>.cu). */
export type KernelModule = 'elementwise' | 'norm' | 'softmax' | 'rope' | 'embedding' | 'cross-entropy' | 'attention' | 'optim';

/** native/cuda/build from src/backends/cuda/ and from dist/backends/cuda/ alike. */
export function kernelDir(): string {
  return process.env['XTUNER_CUDA_KERNELS'] ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../native/cuda/build');
}

export interface Kernel {
  readonly fn: bigint;
  readonly name: string;
}

export class Kernels {
  private readonly modules = new Map<KernelModule, bigint>();
  private readonly fns = new Map<string, Kernel>();

  constructor(private readonly driver: CudaDriver) {}

  get(module: KernelModule, name: string): Kernel {
    let k = this.fns.get(name);
    if (!k) {
      k = { fn: this.driver.getFunction(this.module(module), name), name };
      this.fns.set(name, k);
    }
    return k;
  }

  private module(m: KernelModule): bigint {
    let mod = this.modules.get(m);
    if (mod === undefined) {
      const file = path.join(kernelDir(), `${m}.fatbin`);
      if (!fs.existsSync(file)) {
        throw new XtunerError(`CUDA kernels not built: ${file} is missing`, {
          hint: 'run `npm run build:cuda` (needs nvcc from the CUDA toolkit), or set XTUNER_CUDA_KERNELS to a folder of built kernels',
        });
      }
      mod = this.driver.loadModule(fs.readFileSync(file), file);
      this.modules.set(m, mod);
    }
    return mod;
  }
}
