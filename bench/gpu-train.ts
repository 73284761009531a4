// Benchmark (not a test): training throughput on the GPU, for comparison with the PyTorch peer
// (shared/peer/peer_bench.py) run in the same device call. Random weights of a real model shape,
// one packed row of --seq tokens per step (--samples of them, cut by cuSeqlens), LoRA r=64 alpha=16 dropout 0.1 on every linear but the
// head (XTuner's defaults), QLoRA (the same on NF4 base linears with double quantisation, as
// XTuner's QLoRA configs) or full fine-tuning, AdamW lr 2e-4, clipping at 1.0, bf16 weights and
// activations. Weights are tiled random normal values by default (createModel's init 'tiled':
// speed does not depend on them, and a 7B shape builds in seconds); --init normal draws each one. Prints tokens/s, approximate model TFLOP/s (as the peer counts them: 4 x params x
// tokens for (Q)LoRA without checkpointing, 6 x for full, 2 x more with checkpointing), the peak
// GPU memory of training (the peaks reset after building; on CUDA peak_mem_gib is the allocator's
// blocks in use, as PyTorch's max_memory_allocated counts them, and peak_reserved_gib what it held
// from the driver, as max_memory_reserved; tensor_peak_gib is the device tensors' own bytes) and of
// building (build_peak_gib, device tensor bytes; for QLoRA each linear is quantised on the device as it is
// built, so the bf16 model never exists whole), and for QLoRA the NF4 bytes
// against the bf16 bytes of the quantised weights. Each iteration is the trainer's own (TrainStep,
// src/train/step.ts): the loss over row chunks, the grad norm and clip coefficient on the device,
// AdamW, one read of the loss and the norm; on CUDA captured as a CUDA graph after its first run
// and replayed (--no-graphs: every step queued op by op). --ckpt checkpoints every decoder layer
// (XTuner's default, the peer's gradient_checkpointing_enable). On CUDA it also prints the device
// time of one step (XTUNER_TS_DEVICE_MS: with graphs, of an eager step too), the device time of
// each kernel of one more eager step (XTUNER_TS_PROFILE: events around every launch) and the backend's
// traffic of the last timed step (launches, graph launches, copies each way, waits; with
// XTUNER_CUDA_TRACE=1 the op that caused each copy/wait).
//
// --free-gib N leaves only N GiB of the device free for the run (the rest taken from the driver
// first), as on a smaller card: `--shape llama2-7b --method qlora --ckpt --free-gib 7.5` is an 8 GB
// card less its driver context.
//
//   node --import tsx bench/gpu-train.ts [--shape qwen2.5-0.5b|internlm2-1.8b|llama3-8b|llama2-7b|internlm2-7b] [--method lora|qlora|full] [--seq 2048] [--steps 8] [--warmup 2] [--device cuda|cpu] [--ckpt] [--init tiled|normal] [--samples 1] [--no-graphs] [--free-gib N]

import { parseArgs } from 'node:util';
import { cudaBackend, cudaStatus, type DriverCounters } from '../src/backends/cuda/index.ts';
import { reportError } from '../src/cli/main.ts';
import { createModel } from '../src/models/index.ts';
import { AdamW } from '../src/optim/adamw.ts';
import { injectLora } from '../src/peft/lora.ts';
import { nf4Report, type QuantizeReport } from '../src/quant/nf4-linear.ts';
import { DropoutStream, Rng, memoryStats, resetPeakBytes } from '../src/tensor/index.ts';
import { TrainStep } from '../src/train/step.ts';
import { SHAPES } from './shapes.ts';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: 'qwen2.5-0.5b' },
    method: { type: 'string', default: 'lora' },
    seq: { type: 'string', default: '2048' },
    steps: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    device: { type: 'string', default: 'cuda' },
    ckpt: { type: 'boolean', default: false },
    init: { type: 'string', default: 'tiled' },
    samples: { type: 'string', default: '1' },
    graphs: { type: 'boolean', default: true },
    'free-gib': { type: 'string' },
  },
  allowNegative: true,
});
// out of memory and other XtunerErrors print as the CLI prints them (message and hint, no stack)
process.on('uncaughtException', (e) => process.exit(reportError(e)));

/** One line on stderr and exit 2: bad arguments or no GPU are not crashes. */
function fail(message: string): never {
  process.stderr.write(`gpu-train: ${message}\n`);
  process.exit(2);
}
const shape = SHAPES[values.shape!] ?? fail(`--shape: expected one of ${Object.keys(SHAPES).join(', ')}, got ${values.shape}`);
const method = values.method!;
if (!['lora', 'qlora', 'full'].includes(method)) fail(`--method: expected lora, qlora or full, got ${method}`);
const init = values.init!;
if (init !== 'tiled' && init !== 'normal') fail(`--init: expected tiled or normal, got ${init}`);
const seq = Number(values.seq);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const samples = Number(values.samples);
if (!(Number.isInteger(samples) && samples >= 1 && samples <= seq)) fail(`--samples: expected an integer in [1, ${seq}], got ${values.samples}`);

const gib = (bytes: number): number => +(bytes / 2 ** 30).toFixed(2);
const onCuda = values.device !== 'cpu';
const device = onCuda ? 'cuda' : 'cpu';
const cuda = onCuda ? cudaStatus() : null;
if (cuda && !cuda.available) fail(`no usable CUDA here (${cuda.reason}); --device cpu runs the small shapes on the CPU`);
if (values['free-gib'] !== undefined) {
  const free = Number(values['free-gib']);
  if (!onCuda || !(free > 0)) fail(`--free-gib: expected a size in GiB > 0 on CUDA, got ${values['free-gib']}`);
  const taken = cudaBackend().leaveFree(free * 2 ** 30);
  console.error(`--free-gib ${free}: ${gib(taken)} GiB of the device held outside the allocator, as on a smaller card`);
}
const mib = (bytes: number): number => +(bytes / 2 ** 20).toFixed(1);
const t0 = performance.now();
// QLoRA: each linear is quantised on the device as soon as it is built, its bf16 weight freed, and
// the embedding table stays in host memory (as `xtuner train` runs QLoRA)
const quantization = method === 'qlora' ? { doubleQuant: true } : undefined;
const model = createModel(shape, { device, dtype: 'bfloat16', seed: 0, init, quantization });
if (onCuda) cudaBackend().synchronize(); // the build's device work counts in its time
const tBuilt = performance.now();
// parameters of the model in bf16 terms: the NF4 layers' weights count too
let nParams = [...model.namedParameters()].reduce((n, [, p]) => n + p.size, 0);
let quant: QuantizeReport | null = null;
if (quantization) {
  quant = nf4Report(model, 'bfloat16');
  nParams += quant.bytesBefore / 2; // 2 bytes per bf16 weight
  // the freed bf16 weight blocks stay cached by the allocator otherwise: training should find the
  // card as a QLoRA user's would
  if (onCuda) cudaBackend().emptyCache();
  console.error(
    `quantised ${quant.modules.length} linears to NF4 while building: ` +
      `${mib(quant.bytesAfter)} MiB NF4 (double quant) for ${mib(quant.bytesBefore)} MiB bf16 (${(quant.bytesAfter / quant.bytesBefore).toFixed(3)}x)`,
  );
}
const loraRng = new Rng(1);
const loraDropout = new DropoutStream(loraRng);
if (method !== 'full') injectLora(model, { r: 64, loraAlpha: 16, loraDropout: 0.1, targetModules: null }, loraRng, loraDropout);
model.setGradientCheckpointing(values.ckpt === true, [loraDropout]);
model.train();
const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
const opt = new AdamW(trainable, { lr: 2e-4, betas: [0.9, 0.999], weightDecay: 0 });
const buildPeak = memoryStats(device).peakBytes;
console.error(
  `built ${values.shape} (${(nParams / 1e9).toFixed(3)}B params, init ${init}, ${trainable.length} trainable tensors) in ` +
    `${((performance.now() - t0) / 1e3).toFixed(1)} s (weights ${((tBuilt - t0) / 1e3).toFixed(1)} s), build peak ${gib(buildPeak)} GiB`,
);

const rng = new Rng(2);
const ids = [Array.from({ length: seq }, () => rng.int(Number(shape.vocab_size)))];
// --samples N > 1: the row packs N samples of (nearly) equal length (cuSeqlens, positions restarting at each)
const cu = Array.from({ length: samples + 1 }, (_, i) => Math.round((i * seq) / samples));
const packing = samples === 1 ? {} : {
  cuSeqlens: cu,
  positionIds: [Array.from({ length: seq }, (_, t) => t - cu[cu.findLastIndex((c) => c <= t)]!)],
};
const batch = { inputIds: ids, labels: ids, ...packing };
const stepKind = { lossFactor: 1, optimizerStep: true, lr: 2e-4 };
const trainStep = new TrainStep({ model, optimizer: opt, maxNorm: 1.0, dropout: loraDropout, ...(values.graphs ? {} : { graphs: false }) });
const times: number[] = [];
resetPeakBytes();
if (onCuda) cudaBackend().resetPeaks();
let lastTraffic: DriverCounters | null = null;
for (let i = 0; i < warmup + steps; i++) {
  if (onCuda) cudaBackend().takeCounters();
  const t = performance.now();
  const { loss, gradNorm } = trainStep.run(batch, stepKind); // ends with the step's one read-back
  const dt = (performance.now() - t) / 1e3;
  if (i >= warmup) times.push(dt);
  if (onCuda && i === warmup + steps - 1) lastTraffic = cudaBackend().takeCounters();
  console.error(`step ${i}: loss ${loss.toFixed(4)} grad norm ${gradNorm!.toFixed(4)} ${dt.toFixed(3)} s`);
}
// of the warm-up and timed steps
const tensorPeak = memoryStats(device).peakBytes; // the device's tensors (not the host's: QLoRA's embedding table)
const allocator = onCuda ? cudaBackend().memoryStats() : null;
if (onCuda) {
  // one more step between two events on the stream: its device time (the host's where the host
  // queues slower than the device runs); with graphs, then an eager step's (the graphs go first:
  // an eager step drops the gradients they write)
  const be = cudaBackend();
  const deviceMs: Record<string, number> = { step: be.time(() => trainStep.run(batch, stepKind)) };
  let eager = trainStep;
  if (trainStep.graphs) {
    trainStep.dispose();
    eager = new TrainStep({ model, optimizer: opt, maxNorm: 1.0, dropout: loraDropout, graphs: false });
    deviceMs['eager_step'] = be.time(() => eager.run(batch, stepKind));
  }
  console.log('XTUNER_TS_DEVICE_MS', JSON.stringify(Object.fromEntries(Object.entries(deviceMs).map(([k, v]) => [k, +v.toFixed(2)]))));
  // and one eager step with events around every kernel and cuBLAS call: where the device time goes
  const profile = be.profile(() => eager.run(batch, stepKind));
  const total = profile.reduce((t, r) => t + r.ms, 0);
  console.log('XTUNER_TS_PROFILE', JSON.stringify({
    kernels_ms: +total.toFixed(2),
    top: profile.slice(0, 30).map((r) => `${r.name}: ${r.calls} x, ${r.ms.toFixed(3)} ms`),
  }));
  // the traffic of the last timed step
  const c = lastTraffic!;
  const top = [...c.byKernel].sort((a, b) => b[1] - a[1]);
  const mb = (n: number): number => +(n / 2 ** 20).toFixed(2);
  console.log('XTUNER_TS_TRAFFIC', JSON.stringify({
    launches: c.launches, gemms: c.gemms, graph_launches: c.graphLaunches, htod: c.htod, htod_mib: mb(c.htodBytes), dtoh: c.dtoh, dtoh_mib: mb(c.dtohBytes),
    dtod: c.dtod, memsets: c.memsets, memset_mib: mb(c.memsetBytes), syncs: c.syncs, by_kernel: Object.fromEntries(top),
    ...(c.sites.size > 0 ? { sites: Object.fromEntries([...c.sites].sort((a, b) => b[1][1] - a[1][1]).map(([k, [n, by]]) => [k, `${n} x, ${mb(by)} MiB`])) } : {}),
  }));
}
times.sort((a, b) => a - b);
const med = times[Math.floor(times.length / 2)]!;
const flopsPerToken = ((method === 'full' ? 6 : 4) + (values.ckpt ? 2 : 0)) * nParams;
const result = {
  model: values.shape,
  method,
  grad_ckpt: values.ckpt === true,
  seq,
  params_b: +(nParams / 1e9).toFixed(3),
  step_s_median: +med.toFixed(4),
  tokens_per_s: Math.round(seq / med),
  approx_tflops: +((flopsPerToken * seq) / med / 1e12).toFixed(1),
  peak_mem_gib: gib(allocator?.peakAllocatedBytes ?? tensorPeak),
  ...(allocator ? { peak_reserved_gib: gib(allocator.peakReservedBytes), tensor_peak_gib: gib(tensorPeak) } : {}),
  build_peak_gib: gib(buildPeak),
  ...(quant ? { nf4_mib: mib(quant.bytesAfter), nf4_bf16_mib: mib(quant.bytesBefore), nf4_modules: quant.modules.length } : {}),
  cuda_graphs: trainStep.graphs,
  embedding_on_host: model.embeddingOnHost,
  ...(values['free-gib'] !== undefined ? { free_gib: Number(values['free-gib']) } : {}),
  init,
};
console.log('XTUNER_TS', JSON.stringify(result));
