// Benchmark (not a test): CPU training throughput, forward + backward tokens/s of Llama-shaped
// models with random weights (every parameter trainable, packed rows of `seq` tokens), with
// OpenBLAS and with the JS GEMM (a child process with XTUNER_BLAS=js).
//
// Each measurement follows 2 warm-up steps (the JIT needs a few steps to optimise the kernels) and
// lasts at least --seconds and --steps steps.
//
//   node --import tsx bench/cpu-train.ts [--seq 256] [--steps 2] [--seconds 5] [--shape tiny|small|all] [--blas-only]

import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { blasStatus } from '../src/backends/cpu/blas.ts';
import { createModel } from '../src/models/index.ts';
import { Rng, tidy } from '../src/tensor/index.ts';

const SHAPES: Record<string, Record<string, unknown>> = {
  // the quickstart's model (examples/tiny-assistant/config.json)
  tiny: { hidden_size: 128, intermediate_size: 352, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 2000 },
  // ~20M parameters: 512 hidden, 6 layers, GQA 8/4, 8k vocabulary
  small: { hidden_size: 512, intermediate_size: 1408, num_hidden_layers: 6, num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 8000 },
};

const { values } = parseArgs({
  options: {
    seq: { type: 'string', default: '256' },
    steps: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '5' },
    shape: { type: 'string', default: 'all' },
    'blas-only': { type: 'boolean', default: false },
    child: { type: 'boolean', default: false },
  },
});
const seq = Number(values.seq);
const minSteps = Number(values.steps);
const minMs = Number(values.seconds) * 1000;
const shapes = values.shape === 'all' ? Object.keys(SHAPES) : [values.shape!];

function measure(name: string): { tokensPerSec: number; params: number; msPerStep: number } {
  const model = createModel({ model_type: 'llama', max_position_embeddings: 4096, rms_norm_eps: 1e-6, initializer_range: 0.02, ...SHAPES[name] }, { seed: 0 });
  model.train();
  let params = 0;
  for (const [, p] of model.namedParameters()) {
    p.requiresGrad = true;
    params += p.size;
  }
  const vocab = SHAPES[name]!['vocab_size'] as number;
  const rng = new Rng(1);
  const ids = Int32Array.from({ length: seq }, () => rng.int(vocab));
  // two packed samples per row, as packing produces
  const cuSeqlens = new Int32Array([0, seq >> 1, seq]);
  const positionIds = Int32Array.from({ length: seq }, (_, i) => (i < seq >> 1 ? i : i - (seq >> 1)));
  const step = () =>
    tidy(() => {
      const { loss } = model.forward({ data: ids, shape: [1, seq] }, { labels: { data: ids, shape: [1, seq] }, positionIds: { data: positionIds, shape: [1, seq] }, cuSeqlens });
      loss!.backward();
      for (const [, p] of model.namedParameters()) p.grad = null;
    });
  step(); // warm-up: JIT and first allocations
  step();
  const t0 = performance.now();
  let steps = 0;
  while (steps < minSteps || performance.now() - t0 < minMs) {
    step();
    steps++;
  }
  const ms = (performance.now() - t0) / steps;
  return { tokensPerSec: (seq * 1000) / ms, params, msPerStep: ms };
}

const kernel = blasStatus().path ? `OpenBLAS (${blasStatus().path})` : `JS sgemm (${blasStatus().reason})`;
if (!values.child) {
  console.log(`CPU forward+backward, ${os.availableParallelism()} cores, ${os.cpus()[0]?.model ?? 'cpu'}, seq ${seq} (2 packed samples per row), every parameter trainable`);
}
for (const name of shapes) {
  const r = measure(name);
  console.log(`${name.padEnd(6)} ${(r.params / 1e6).toFixed(1).padStart(5)}M params  ${kernel.padEnd(20).slice(0, 60)}  ${r.msPerStep.toFixed(0).padStart(6)} ms/step  ${r.tokensPerSec.toFixed(0).padStart(7)} tokens/s`);
}
if (!values.child && !values['blas-only'] && blasStatus().path) {
  const r = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, '--child', '--seq', String(seq), '--steps', String(minSteps), '--seconds', values.seconds!, '--shape', values.shape!], {
    env: { ...process.env, XTUNER_BLAS: 'js' },
    stdio: 'inherit',
  });
  process.exitCode = r.status ?? 1;
}
