// Benchmark (not a test): decoding speed, as `xtuner chat` decodes. Random weights of a shape
// (bench/shapes.ts, tiled as in gpu-train.ts) in bf16, or with --bits 4 the base linears in NF4 as
// `chat --bits 4` loads them (double quantisation, the embedding table in host memory); a prompt of
// --prompt random tokens prefilled into the KV cache, then --tokens greedy tokens one at a time,
// then --tokens more sampled with `xtuner chat`'s defaults (top-k 40, top-p 0.75, temperature 0.1).
// Prints XTUNER_TS_CHAT: the prefill's time, greedy decoding tokens/s and ms per token (wall
// time), ms per sampled token (the host's sampling on top), the device time of one decoding step
// (events around it: on CUDA), and peak GPU memory. ms per token against the device's says which
// side bounds decoding: the host or the device's reads of the weights. On CUDA a one-token step is
// a CUDA graph replay from the third token on (src/generate/decode-graph.ts; XTUNER_CUDA_GRAPHS=0
// decodes op by op, for comparison).
//
//   node --import tsx bench/gpu-chat.ts [--shape qwen2.5-0.5b|llama2-7b|...] [--bits 4] [--prompt 64] [--tokens 64] [--device cuda|cpu]

import { parseArgs } from 'node:util';
import { cudaBackend, cudaStatus } from '../src/backends/cuda/index.ts';
import { reportError } from '../src/cli/main.ts';
import type { PreallocatedKvCache } from '../src/generate/kv-cache.ts';
import { XTUNER_CHAT_DEFAULTS } from '../src/generate/chat-session.ts';
import { pickFromRow, type SamplingOptions } from '../src/generate/sampling.ts';
import { createModel } from '../src/models/index.ts';
import { nf4Report } from '../src/quant/nf4-linear.ts';
import { memoryStats, noGrad, resetPeakBytes, Rng } from '../src/tensor/index.ts';
import { SHAPES } from './shapes.ts';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: 'qwen2.5-0.5b' },
    bits: { type: 'string' },
    prompt: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '64' },
    device: { type: 'string', default: 'cuda' },
  },
});
process.on('uncaughtException', (e) => process.exit(reportError(e)));

function fail(message: string): never {
  process.stderr.write(`gpu-chat: ${message}\n`);
  process.exit(2);
}
const shape = SHAPES[values.shape!] ?? fail(`--shape: expected one of ${Object.keys(SHAPES).join(', ')}, got ${values.shape}`);
if (values.bits !== undefined && values.bits !== '4') fail(`--bits: expected 4, got ${values.bits}`);
const [promptLen, tokens] = [Number(values.prompt), Number(values.tokens)];
if (!(Number.isInteger(promptLen) && promptLen >= 1 && Number.isInteger(tokens) && tokens >= 1)) fail('--prompt and --tokens: expected integers >= 1');
const onCuda = values.device !== 'cpu';
const device = onCuda ? 'cuda' : 'cpu';
const cuda = onCuda ? cudaStatus() : null;
if (cuda && !cuda.available) fail(`no usable CUDA here (${cuda.reason}); --device cpu runs the small shapes on the CPU`);

const quantization = values.bits ? { doubleQuant: true } : undefined;
const model = createModel(shape, { device, dtype: 'bfloat16', seed: 0, init: 'tiled', quantization }).eval();
if (onCuda) cudaBackend().emptyCache(); // the freed bf16 weights of the quantised layers
const gib = (bytes: number): number => +(bytes / 2 ** 30).toFixed(2);
const rng = new Rng(3);
const prompt = Int32Array.from({ length: promptLen }, () => rng.int(Number(shape['vocab_size'])));
resetPeakBytes();
if (onCuda) cudaBackend().resetPeaks();

const result = noGrad(() => {
  const cache = model.createKvCache(promptLen + 2 * tokens + 1) as PreallocatedKvCache;
  try {
    // each token chosen as generation chooses it (pickFromRow: greedy reads one id back)
    const context = [...prompt];
    const uniform = () => rng.uniform();
    const next = (ids: Int32Array, opts: SamplingOptions): number => {
      const row = model.nextRow(ids, cache);
      try {
        return pickFromRow(row, context, opts, uniform);
      } finally {
        row.dispose();
      }
    };
    let t = performance.now();
    let id = next(prompt, {}); // the id comes back: the step is done
    const prefillMs = performance.now() - t;
    t = performance.now();
    for (let i = 1; i < tokens; i++) id = next(Int32Array.of(id), {});
    const msPerToken = (performance.now() - t) / Math.max(1, tokens - 1);
    const deviceMs = onCuda ? cudaBackend().time(() => next(Int32Array.of(id), {})) : null;
    // then as `xtuner chat` samples by default (XTuner's top-k 40, top-p 0.75, temperature 0.1)
    t = performance.now();
    for (let i = 0; i < tokens; i++) context.push((id = next(Int32Array.of(id), XTUNER_CHAT_DEFAULTS)));
    const msPerTokenSampled = (performance.now() - t) / tokens;
    return { prefillMs, msPerToken, msPerTokenSampled, deviceMs, graph: cache.decodeGraph ? { ...cache.decodeGraph.counts } : null };
  } finally {
    cache.dispose();
  }
});
const quant = quantization ? nf4Report(model, 'bfloat16') : null;
console.log('XTUNER_TS_CHAT', JSON.stringify({
  model: values.shape,
  bits: quantization ? 4 : 16,
  prompt: promptLen,
  tokens,
  prefill_ms: +result.prefillMs.toFixed(1),
  tokens_per_s: +(1000 / result.msPerToken).toFixed(1),
  ms_per_token: +result.msPerToken.toFixed(2),
  ms_per_token_sampled: +result.msPerTokenSampled.toFixed(2),
  ...(result.deviceMs !== null ? { device_ms_per_token: +result.deviceMs.toFixed(2) } : {}),
  peak_mem_gib: gib(onCuda ? cudaBackend().memoryStats().peakAllocatedBytes : memoryStats(device).peakBytes),
  ...(quant ? { nf4_modules: quant.modules.length } : {}),
  embedding_on_host: model.embeddingOnHost,
  // steps op by op, captured, replayed as a CUDA graph (null: none; XTUNER_CUDA_GRAPHS=0, or the CPU)
  decode_graph: result.graph,
}));
