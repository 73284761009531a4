// The CUDA driver API through koffi: device and context, one stream, device memory, module loading,
// kernel launches with packed parameters, events, stream capture into CUDA graphs and their launch.
// Every call's result is checked; a failure is an Error naming the call and the CUDA error. Device
// pointers are plain numbers (48-bit addresses fit a double exactly); koffi's own pointers
// (modules, functions, streams) are BigInts.
// Not here: which kernels exist (kernels.ts), memory policy (allocator.ts), cuBLAS (cublas.ts).

import koffi from 'koffi';
import { XtunerError } from '../../errors.ts';
import { loadDriverLibrary } from './libs.ts';

/** A koffi-bound C function; results are ints (CUresult) unless said otherwise. */
type CFn = (...args: unknown[]) => number;

const CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
const CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
const CU_STREAM_NON_BLOCKING = 1;
/** Other threads' CUDA calls and this thread's allocations are not checked against the capture. */
const CU_STREAM_CAPTURE_MODE_RELAXED = 2;
export const CUDA_ERROR_OUT_OF_MEMORY = 2;

// Errors worth a plain-words explanation; cuGetErrorName supplies the names of the rest.
const EXPLAIN: Record<number, string> = {
  3: 'the driver is not initialised',
  34: 'libcuda is a stub library (CUDA toolkit stubs on the loader path instead of the real driver)',
  100: 'no CUDA-capable GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)',
  209: 'the kernels carry no code for this GPU: rebuild them with scripts/build-cuda.sh',
  222: 'the driver is older than the compiler that built the kernels (update the NVIDIA driver, or build them with an older nvcc: scripts/build-cuda.sh)',
  700: 'a kernel accessed an illegal address (a bug: please report it with XTUNER_DEBUG=1)',
  701: 'too many resources requested for a launch',
  803: 'the driver and the kernel module versions differ (reboot or reinstall the driver)',
  804: 'forward compatibility is not supported on this GPU',
  900: 'the operation cannot be captured into a CUDA graph (a host copy or wait during capture)',
  901: 'the CUDA graph capture was invalidated by an operation that cannot be captured',
};

/**
 * Host-side traffic of the backend since the last reset: launches (by kernel name), copies each way
 * with their bytes, memsets, cuBLAS calls and host waits. Counting is a few integer adds per call;
 * with XTUNER_CUDA_TRACE=1 each copy and wait also records the JavaScript caller that caused it
 * (a stack walk per call: for measuring, not for training).
 */
export interface DriverCounters {
  launches: number;
  byKernel: Map<string, number>;
  htod: number;
  htodBytes: number;
  dtoh: number;
  dtohBytes: number;
  dtod: number;
  dtodBytes: number;
  memsets: number;
  memsetBytes: number;
  gemms: number;
  syncs: number;
  /** CUDA graph replays queued (their work is in none of the other counts). */
  graphLaunches: number;
  /** XTUNER_CUDA_TRACE=1 only: 'htod|dtoh|sync <caller>' -> [count, bytes]. */
  sites: Map<string, [number, number]>;
}

export function newCounters(): DriverCounters {
  return {
    launches: 0, byKernel: new Map(), htod: 0, htodBytes: 0, dtoh: 0, dtohBytes: 0, dtod: 0, dtodBytes: 0,
    memsets: 0, memsetBytes: 0, gemms: 0, syncs: 0, graphLaunches: 0, sites: new Map(),
  };
}

const TRACE = process.env['XTUNER_CUDA_TRACE'] === '1';
/** XTUNER_CUDA_SYNC=1: wait after every launch, so an error names its kernel (read once: launches are the hot path). */
const SYNC_EACH_LAUNCH = process.env['XTUNER_CUDA_SYNC'] === '1';

/** The first stack frame outside the backends and the tensor core (the op or module that asked). */
function caller(): string {
  const lines = (new Error().stack ?? '').split('\n').slice(1);
  for (const l of lines) {
    if (/src\/backends\/|src\/tensor\/(tensor|create|engine|inplace|autograd)\.ts|node:/.test(l)) continue;
    const m = /\(?([^()]*\/(src|bench|test)\/[^():]+):(\d+)/.exec(l);
    if (m) return `${m[1]!.slice(m[1]!.lastIndexOf(`/${m[2]}/`) + 1)}:${m[3]}`;
  }
  return '?';
}

export interface DeviceInfo {
  ordinal: number;
  name: string;
  computeCapability: [number, number];
  multiprocessors: number;
  /** Largest dynamic shared memory a block may opt in to, bytes. */
  maxSharedPerBlock: number;
  totalMemory: number;
  /** The CUDA version the driver runs, as `major.minor` and as numbers. */
  driverVersion: string;
  cudaVersion: [number, number];
}

export class CudaDriver {
  readonly libPath: string;
  readonly device: DeviceInfo;
  /** The stream every launch, copy and cuBLAS call goes to (CUstream, a koffi pointer). */
  readonly stream: bigint;
  private readonly f: Record<string, CFn>;
  private readonly dynSmemSet = new Map<bigint, number>();
  /** Traffic since the last reset (see DriverCounters). */
  counters: DriverCounters = newCounters();
  /** Whether work on the stream is being captured into a graph (see beginCapture). */
  private capturing = false;
  /** While profile() runs: each kernel or cuBLAS call's name and the events around it. */
  private profiled: { name: string; start: unknown; end: unknown }[] | null = null;
  // launch parameters: values at 16-byte aligned slots of `argStore`, their addresses in `argPtrs`
  private readonly argStore = Buffer.alloc(4096);
  private readonly argPtrs = Buffer.alloc(64 * 8);
  private readonly argBase: bigint;

  constructor(ordinal = 0) {
    const { lib, path } = loadDriverLibrary();
    this.libPath = path;
    const sig: Record<string, string> = {
      cuInit: 'int cuInit(unsigned int flags)',
      cuDriverGetVersion: 'int cuDriverGetVersion(_Out_ int *v)',
      cuDeviceGetCount: 'int cuDeviceGetCount(_Out_ int *n)',
      cuDeviceGet: 'int cuDeviceGet(_Out_ int *dev, int ordinal)',
      cuDeviceGetName: 'int cuDeviceGetName(_Out_ uint8_t *name, int len, int dev)',
      cuDeviceGetAttribute: 'int cuDeviceGetAttribute(_Out_ int *v, int attrib, int dev)',
      cuDeviceTotalMem: 'int cuDeviceTotalMem_v2(_Out_ size_t *bytes, int dev)',
      cuDevicePrimaryCtxRetain: 'int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int dev)',
      cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
      cuStreamCreate: 'int cuStreamCreate(_Out_ void **stream, unsigned int flags)',
      cuStreamSynchronize: 'int cuStreamSynchronize(void *stream)',
      cuMemAlloc: 'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
      cuMemFree: 'int cuMemFree_v2(uint64_t dptr)',
      cuMemGetInfo: 'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
      cuMemcpyHtoDAsync: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)',
      cuMemcpyDtoHAsync: 'int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, void *stream)',
      cuMemcpyDtoDAsync: 'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
      cuMemsetD8Async: 'int cuMemsetD8Async(uint64_t dst, uint8_t value, size_t n, void *stream)',
      cuMemsetD16Async: 'int cuMemsetD16Async(uint64_t dst, uint16_t value, size_t n, void *stream)',
      cuMemsetD32Async: 'int cuMemsetD32Async(uint64_t dst, uint32_t value, size_t n, void *stream)',
      cuModuleLoadData: 'int cuModuleLoadData(_Out_ void **module, const void *image)',
      cuModuleGetFunction: 'int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)',
      cuFuncSetAttribute: 'int cuFuncSetAttribute(void *fn, int attrib, int value)',
      cuLaunchKernel:
        'int cuLaunchKernel(void *fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int smem, void *stream, void *params, void *extra)',
      cuEventCreate: 'int cuEventCreate(_Out_ void **event, unsigned int flags)',
      cuEventRecord: 'int cuEventRecord(void *event, void *stream)',
      cuEventSynchronize: 'int cuEventSynchronize(void *event)',
      cuEventElapsedTime: 'int cuEventElapsedTime(_Out_ float *ms, void *start, void *end)',
      cuEventDestroy: 'int cuEventDestroy_v2(void *event)',
      cuGetErrorName: 'int cuGetErrorName(int error, _Out_ void **name)',
      cuStreamBeginCapture: 'int cuStreamBeginCapture_v2(void *stream, int mode)',
      cuStreamEndCapture: 'int cuStreamEndCapture(void *stream, _Out_ void **graph)',
      cuGraphInstantiate: 'int cuGraphInstantiateWithFlags(_Out_ void **exec, void *graph, uint64_t flags)',
      cuGraphLaunch: 'int cuGraphLaunch(void *exec, void *stream)',
      cuGraphExecDestroy: 'int cuGraphExecDestroy(void *exec)',
      cuGraphDestroy: 'int cuGraphDestroy(void *graph)',
    };
    const f: Record<string, CFn> = {};
    for (const [name, s] of Object.entries(sig)) {
      try {
        f[name] = lib.func(s) as unknown as CFn;
      } catch (e) {
        throw new XtunerError(`the CUDA driver at ${path} lacks ${name}: ${(e as Error).message}`, {
          hint: 'update the NVIDIA driver (>= 525)',
        });
      }
    }
    this.f = f;
    const ver = [0];
    this.check('cuDriverGetVersion', f['cuDriverGetVersion']!(ver));
    const cudaVersion: [number, number] = [Math.floor(ver[0]! / 1000), (ver[0]! % 1000) / 10];
    const driverVersion = cudaVersion.join('.');
    this.check('cuInit', f['cuInit']!(0), `driver ${driverVersion} at ${path}`);
    const count = [0];
    this.check('cuDeviceGetCount', f['cuDeviceGetCount']!(count));
    if (ordinal >= count[0]!) {
      throw new XtunerError(`CUDA device ${ordinal} does not exist: the driver sees ${count[0]} GPU(s)`, {
        hint: 'check nvidia-smi and CUDA_VISIBLE_DEVICES',
      });
    }
    const dev = [0];
    this.check('cuDeviceGet', f['cuDeviceGet']!(dev, ordinal));
    const nameBuf = Buffer.alloc(256);
    this.check('cuDeviceGetName', f['cuDeviceGetName']!(nameBuf, 256, dev[0]));
    const attr = (a: number): number => {
      const v = [0];
      this.check('cuDeviceGetAttribute', f['cuDeviceGetAttribute']!(v, a, dev[0]));
      return v[0]!;
    };
    const total = [0];
    this.check('cuDeviceTotalMem', f['cuDeviceTotalMem']!(total, dev[0]));
    this.device = {
      ordinal,
      name: nameBuf.toString('utf8', 0, Math.max(0, nameBuf.indexOf(0))),
      computeCapability: [attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)],
      multiprocessors: attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
      maxSharedPerBlock: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
      totalMemory: Number(total[0]),
      driverVersion,
      cudaVersion,
    };
    if (this.device.computeCapability[0] < 8) {
      throw new XtunerError(
        `GPU ${this.device.name} has compute capability ${this.device.computeCapability.join('.')}; xtuner-ts needs 8.0 or newer (Ampere, Ada, Hopper, Blackwell)`,
        { hint: "run on the CPU (--device cpu, or device: 'cpu' in a config)" },
      );
    }
    const ctx: unknown[] = [null];
    this.check('cuDevicePrimaryCtxRetain', f['cuDevicePrimaryCtxRetain']!(ctx, dev[0]));
    this.check('cuCtxSetCurrent', f['cuCtxSetCurrent']!(ctx[0]));
    const stream: unknown[] = [null];
    this.check('cuStreamCreate', f['cuStreamCreate']!(stream, CU_STREAM_NON_BLOCKING));
    this.stream = stream[0] as bigint;
    this.argBase = koffi.address(this.argStore);
  }

  /** The CUDA error's name (CUDA_ERROR_...), or its number when the driver cannot say. */
  errorName(code: number): string {
    const out: unknown[] = [null];
    try {
      if (this.f['cuGetErrorName']!(code, out) === 0 && out[0]) return koffi.decode.string(out[0] as bigint);
    } catch {
      // fall through
    }
    return `CUDA error ${code}`;
  }

  /** Throws when `rc` is not CUDA_SUCCESS; known user-fixable causes become XtunerErrors. */
  check(call: string, rc: number, context = ''): void {
    if (rc === 0) return;
    const where = context ? ` (${context})` : '';
    const name = this.f ? this.errorName(rc) : `CUDA error ${rc}`;
    const why = EXPLAIN[rc];
    if (why) throw new XtunerError(`${call} failed: ${name}${where}: ${why}`);
    throw new Error(`${call} failed: ${name} (${rc})${where}`);
  }

  // ---- memory ----

  /** A fresh device allocation, or null when the device is out of memory. */
  memAlloc(bytes: number): number | null {
    const p = [0];
    const rc = this.f['cuMemAlloc']!(p, bytes);
    if (rc === CUDA_ERROR_OUT_OF_MEMORY) return null;
    this.check('cuMemAlloc', rc, `${bytes} bytes`);
    return Number(p[0]);
  }

  memFree(ptr: number): void {
    this.check('cuMemFree', this.f['cuMemFree']!(ptr));
  }

  memInfo(): { free: number; total: number } {
    const free = [0];
    const total = [0];
    this.check('cuMemGetInfo', this.f['cuMemGetInfo']!(free, total));
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  /**
   * Host to device. Returns once `src` has been staged, so the caller may reuse it at once. `what`
   * names the operation in the error when this is attempted during graph capture.
   */
  copyToDevice(dst: number, src: ArrayBufferView, bytes: number, what = 'a copy to the device'): void {
    this.refuseInCapture(what, 'copies host memory to the device');
    this.count('htod', bytes);
    if (bytes > 0) this.check('cuMemcpyHtoDAsync', this.f['cuMemcpyHtoDAsync']!(dst, src, bytes, this.stream));
  }

  /** Device to host, after all work queued before it; waits for the data. */
  copyToHost(dst: ArrayBufferView, src: number, bytes: number, what = 'a copy to the host'): void {
    if (bytes === 0) return;
    this.refuseInCapture(what, 'reads device memory back to the host');
    this.count('dtoh', bytes);
    this.check('cuMemcpyDtoHAsync', this.f['cuMemcpyDtoHAsync']!(dst, src, bytes, this.stream));
    this.synchronize();
  }

  copyDeviceToDevice(dst: number, src: number, bytes: number): void {
    this.counters.dtod++;
    this.counters.dtodBytes += bytes;
    if (bytes > 0) this.check('cuMemcpyDtoDAsync', this.f['cuMemcpyDtoDAsync']!(dst, src, bytes, this.stream));
  }

  /** Fill `count` elements of 1, 2 or 4 bytes at dst with `bits`. */
  memset(dst: number, elemBytes: 1 | 2 | 4, bits: number, count: number): void {
    if (count === 0) return;
    this.counters.memsets++;
    this.counters.memsetBytes += count * elemBytes;
    const name = elemBytes === 1 ? 'cuMemsetD8Async' : elemBytes === 2 ? 'cuMemsetD16Async' : 'cuMemsetD32Async';
    this.check(name, this.f[name]!(dst, bits, count, this.stream));
  }

  synchronize(): void {
    this.refuseInCapture('synchronize', 'waits for the device');
    this.count('sync', 0);
    this.check('cuStreamSynchronize', this.f['cuStreamSynchronize']!(this.stream));
  }

  private count(kind: 'htod' | 'dtoh' | 'sync', bytes: number): void {
    const c = this.counters;
    if (kind === 'htod') {
      c.htod++;
      c.htodBytes += bytes;
    } else if (kind === 'dtoh') {
      c.dtoh++;
      c.dtohBytes += bytes;
    } else c.syncs++;
    if (!TRACE) return;
    const key = `${kind} ${caller()}`;
    const e = c.sites.get(key) ?? [0, 0];
    e[0]++;
    e[1] += bytes;
    c.sites.set(key, e);
  }

  // ---- modules and launches ----

  loadModule(image: Buffer, what: string): bigint {
    const m: unknown[] = [null];
    this.check('cuModuleLoadData', this.f['cuModuleLoadData']!(m, image), what);
    return m[0] as bigint;
  }

  getFunction(module: bigint, name: string): bigint {
    const fn: unknown[] = [null];
    this.check('cuModuleGetFunction', this.f['cuModuleGetFunction']!(fn, module, name), name);
    return fn[0] as bigint;
  }

  /** Let `fn` use `bytes` of dynamic shared memory (needed above 48 KiB). */
  allowDynamicShared(fn: bigint, bytes: number, name: string): void {
    if ((this.dynSmemSet.get(fn) ?? 48 * 1024) >= bytes) return;
    if (bytes > this.device.maxSharedPerBlock) {
      throw new XtunerError(
        `${name} needs ${bytes} bytes of shared memory per block; ${this.device.name} allows ${this.device.maxSharedPerBlock}`,
        { hint: 'this layer shape (e.g. a head dimension of 256) is not supported on this GPU yet' },
      );
    }
    this.check('cuFuncSetAttribute', this.f['cuFuncSetAttribute']!(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes), name);
    this.dynSmemSet.set(fn, bytes);
  }

  /**
   * Launch `fn` with parameters described by `sig`, one letter per parameter: p = device pointer
   * (number), i = int32, l = int64 (number or bigint), f = float32, s = a struct passed by value
   * (a Buffer, copied as is).
   */
  launch(
    fn: bigint,
    name: string,
    grid: readonly [number, number?, number?],
    block: readonly [number, number?, number?],
    smem: number,
    sig: string,
    args: readonly (number | bigint | Buffer)[],
  ): void {
    if (args.length !== sig.length) throw new Error(`${name}: ${args.length} arguments for signature '${sig}'`);
    const c = this.counters;
    c.launches++;
    c.byKernel.set(name, (c.byKernel.get(name) ?? 0) + 1);
    const store = this.argStore;
    let off = 0;
    for (let i = 0; i < sig.length; i++) {
      const a = args[i]!;
      this.argPtrs.writeBigUInt64LE(this.argBase + BigInt(off), 8 * i);
      switch (sig[i]) {
        case 'p': {
          const v = a as number;
          store.writeUInt32LE(v % 0x100000000, off);
          store.writeUInt32LE(Math.floor(v / 0x100000000), off + 4);
          off += 16;
          break;
        }
        case 'i':
          store.writeInt32LE(a as number, off);
          off += 16;
          break;
        case 'l':
          store.writeBigInt64LE(BigInt(a as number | bigint), off);
          off += 16;
          break;
        case 'f':
          store.writeFloatLE(a as number, off);
          off += 16;
          break;
        case 's': {
          const b = a as Buffer;
          b.copy(store, off);
          off += Math.ceil(b.length / 16) * 16;
          break;
        }
        default:
          throw new Error(`${name}: bad signature letter '${sig[i]}'`);
      }
    }
    if (off > store.length) throw new Error(`${name}: parameters exceed ${store.length} bytes`);
    let rc = 0;
    this.around(name, () => {
      rc = this.f['cuLaunchKernel']!(
        fn, grid[0], grid[1] ?? 1, grid[2] ?? 1, block[0], block[1] ?? 1, block[2] ?? 1, smem, this.stream, this.argPtrs, null,
      );
    });
    this.check('cuLaunchKernel', rc, `${name} grid [${grid.join(',')}] block [${block.join(',')}] smem ${smem}`);
    if (SYNC_EACH_LAUNCH && !this.capturing) this.check(`${name} (synchronous check)`, this.f['cuStreamSynchronize']!(this.stream));
  }

  // ---- CUDA graphs ----

  /** Whether the stream's work is being captured (between beginCapture and endCapture). */
  get isCapturing(): boolean {
    return this.capturing;
  }

  /**
   * From now until endCapture, launches, memsets and device-to-device copies on the stream are
   * recorded into a graph instead of run. Relaxed mode: the allocator may still call cuMemAlloc
   * during capture (the global mode forbids such "unsafe" calls on this thread).
   */
  beginCapture(): void {
    if (this.capturing) throw new Error('a CUDA graph capture is already under way on this stream');
    this.check('cuStreamBeginCapture', this.f['cuStreamBeginCapture']!(this.stream, CU_STREAM_CAPTURE_MODE_RELAXED));
    this.capturing = true;
  }

  /** Ends the capture and returns the graph (CUgraph); throws when the capture was invalidated. */
  endCapture(): bigint {
    if (!this.capturing) throw new Error('no CUDA graph capture to end');
    this.capturing = false;
    const g: unknown[] = [null];
    this.check('cuStreamEndCapture', this.f['cuStreamEndCapture']!(this.stream, g));
    return g[0] as bigint;
  }

  /** An executable graph (CUgraphExec) of `graph`; the graph itself may be destroyed afterwards. */
  instantiateGraph(graph: bigint): bigint {
    const x: unknown[] = [null];
    this.check('cuGraphInstantiateWithFlags', this.f['cuGraphInstantiate']!(x, graph, 0));
    return x[0] as bigint;
  }

  /** Queue a replay of `exec` on the stream. */
  launchGraph(exec: bigint): void {
    this.counters.graphLaunches++;
    this.check('cuGraphLaunch', this.f['cuGraphLaunch']!(exec, this.stream));
  }

  destroyGraphExec(exec: bigint): void {
    this.check('cuGraphExecDestroy', this.f['cuGraphExecDestroy']!(exec));
  }

  destroyGraph(graph: bigint): void {
    this.check('cuGraphDestroy', this.f['cuGraphDestroy']!(graph));
  }

  /**
   * Host copies and waits cannot be part of a graph: on a card they fail for pageable memory and
   * invalidate the capture. Refused here first, with the operation and its caller named.
   */
  private refuseInCapture(what: string, does: string): void {
    if (!this.capturing) return;
    throw new XtunerError(`${what} ${does} during CUDA graph capture (called from ${caller()})`, {
      hint: 'a captured graph may only queue device work: write its inputs before capture (or before each launch), read results after',
    });
  }

  // ---- events (timing) ----

  /** Queues one kernel or library call (`name`), between two events while profile() runs. */
  around(name: string, enqueue: () => void): void {
    if (this.profiled === null) return enqueue();
    const start = this.newEvent();
    const end = this.newEvent();
    this.record(start);
    enqueue();
    this.record(end);
    this.profiled.push({ name, start, end });
  }

  /**
   * Device time of each kernel (and cuBLAS call) that `work` queues, summed by name, largest first:
   * every call between two events, so the gaps between calls are left out. For a profile of one
   * step; not inside a graph capture.
   */
  profile(work: () => void): { name: string; calls: number; ms: number }[] {
    if (this.capturing) throw new Error('profile() during a CUDA graph capture');
    this.profiled = [];
    const calls = this.profiled;
    try {
      work();
    } finally {
      this.profiled = null;
    }
    this.synchronize();
    const byName = new Map<string, { name: string; calls: number; ms: number }>();
    for (const c of calls) {
      const row = byName.get(c.name) ?? { name: c.name, calls: 0, ms: 0 };
      row.calls++;
      row.ms += this.elapsedMs(c.start, c.end);
      byName.set(c.name, row);
      this.f['cuEventDestroy']!(c.start);
      this.f['cuEventDestroy']!(c.end);
    }
    return [...byName.values()].sort((a, b) => b.ms - a.ms);
  }

  private newEvent(): unknown {
    const e: unknown[] = [null];
    this.check('cuEventCreate', this.f['cuEventCreate']!(e, 0));
    return e[0];
  }

  private record(event: unknown): void {
    this.check('cuEventRecord', this.f['cuEventRecord']!(event, this.stream));
  }

  /** Milliseconds between two recorded events (both complete). */
  private elapsedMs(start: unknown, end: unknown): number {
    const ms = [0];
    this.check('cuEventElapsedTime', this.f['cuEventElapsedTime']!(ms, start, end));
    return ms[0]!;
  }

  /** Milliseconds of device time that `work` queues, measured with events on the stream. */
  time(work: () => void): number {
    const start = this.newEvent();
    const end = this.newEvent();
    try {
      this.record(start);
      work();
      this.record(end);
      this.check('cuEventSynchronize', this.f['cuEventSynchronize']!(end));
      return this.elapsedMs(start, end);
    } finally {
      this.f['cuEventDestroy']!(start);
      this.f['cuEventDestroy']!(end);
    }
  }
}
