// A packed LoRA training step of a bf16 model on CUDA copies its inputs to the device once, at its
// start: ids, targets and cuSeqlens in one upload into a buffer that stays at the same address
// step after step, then the loss scale (1 / supervised targets) and the rope tables (cos | sin) likewise; nothing between the first launch and the optimizer
// uploads (no attention tile lists, no loss-chunk labels). The optimizer's uploads are counted apart,
// and the dropout stream's per-step seed goes before the step as the trainer writes it (the first
// step creates the seed's device buffer at the first dropout call: it is the warm-up step, which a
// CUDA graph never captures, and is not checked). Losses as the CPU backend's, so the device-built
// tiles and the views of the inputs feed the same numbers.

import assert from 'node:assert/strict';
import test from 'node:test';
import { CudaDriver } from '../../src/backends/cuda/driver.ts';
import { loadModel } from '../../src/models/index.ts';
import { AdamW } from '../../src/optim/adamw.ts';
import { clipCoefficient } from '../../src/optim/clip.ts';
import { injectLora } from '../../src/peft/lora.ts';
import { DropoutStream, Rng, readScalars, tidy, type Device } from '../../src/tensor/index.ts';
import { BASE_MODEL, LLAMA_TARGETS, readExpected } from '../peft/helpers.ts';
import { SKIP } from './helpers.ts';

const batch = readExpected('lora');
/** Relative, as step.test.ts: two backends' bf16 roundings drift apart through the model. */
const BF16_STEP_TOL = 2 ** -5;
const STEPS = 3;

/** The fixture's rows packed: samples of uneven lengths, one across the row end, positions restarting per sample. */
function packedInputs() {
  const B = batch.ids.length;
  const T = batch.ids[0]!.length;
  const cu: number[] = [0];
  for (const len of [3, 1, T - 2, 5]) if (cu[cu.length - 1]! + len < B * T) cu.push(cu[cu.length - 1]! + len);
  cu.push(B * T);
  const positions = new Int32Array(B * T);
  for (let i = 0; i + 1 < cu.length; i++) for (let p = cu[i]!; p < cu[i + 1]!; p++) positions[p] = p - cu[i]!;
  const shape = [B, T] as const;
  return {
    ids: { data: Int32Array.from(batch.ids.flat()), shape },
    labels: { data: Int32Array.from(batch.labels.flat()), shape },
    positionIds: { data: positions, shape },
    cuSeqlens: Int32Array.from(cu),
    rows: Math.ceil((B * T) / 3), // three loss chunks: three sets of targets
  };
}

/** Driver events in order: copies to the device (with the destination) and kernel launches. */
function recordDriver(): { events: { kind: 'htod' | 'launch' | 'optimizer'; dst?: number }[]; restore: () => void } {
  const events: { kind: 'htod' | 'launch' | 'optimizer'; dst?: number }[] = [];
  const proto = CudaDriver.prototype;
  const { copyToDevice, launch } = proto;
  proto.copyToDevice = function (this: CudaDriver, ...a: Parameters<typeof copyToDevice>) {
    events.push({ kind: 'htod', dst: a[0] });
    return copyToDevice.apply(this, a);
  };
  proto.launch = function (this: CudaDriver, ...a: Parameters<typeof launch>) {
    events.push({ kind: 'launch' });
    return launch.apply(this, a);
  };
  return { events, restore: () => Object.assign(proto, { copyToDevice, launch }) };
}

async function run(device: Device, events: { kind: string; dst?: number }[] | null): Promise<{ losses: number[]; steps: { kind: string; dst?: number }[][] }> {
  const model = await loadModel(BASE_MODEL, { device, dtype: 'bfloat16' });
  const stream = new DropoutStream(new Rng(11)); // the same masks on both backends
  injectLora(model, { r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: LLAMA_TARGETS }, new Rng(9), stream);
  model.train();
  const named = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  const trainable = named.map(([, p]) => p);
  const opt = new AdamW(named, { lr: 1e-3 });
  const { rows, ...inputs } = packedInputs();
  const losses: number[] = [];
  const steps: { kind: string; dst?: number }[][] = [];
  for (let step = 0; step < STEPS; step++) {
    stream.nextStep(); // the step's dropout seed, written before the step as the trainer does
    events?.splice(0);
    const [loss] = tidy(() => {
      const out = model.forward(inputs.ids, { ...inputs, logits: false, lossChunkRows: rows });
      out.loss.backward();
      events?.push({ kind: 'optimizer' });
      const clip = clipCoefficient(trainable, 1);
      opt.step(clip.coef);
      opt.zeroGrad();
      return readScalars([out.loss, clip.norm]);
    });
    losses.push(loss!);
    if (events) steps.push([...events]);
  }
  opt.dispose();
  return { losses, steps };
}

test('a packed CUDA training step uploads only at its start, into the same buffer each step', { skip: SKIP }, async () => {
  const rec = recordDriver();
  let cuda;
  try {
    cuda = await run('cuda', rec.events);
  } finally {
    rec.restore();
  }
  const cpu = await run('cpu', null);
  const inputBuffers = new Set<number>();
  const scaleBuffers = new Set<number>();
  const ropeBuffers = new Set<number>();
  for (const [i, ev] of cuda.steps.entries()) {
    if (i === 0) continue; // the warm-up step (see the header)
    const first = ev.findIndex((e) => e.kind === 'launch');
    const opt = ev.findIndex((e) => e.kind === 'optimizer');
    const before = ev.slice(0, first).filter((e) => e.kind === 'htod');
    const inside = ev.slice(first, opt).filter((e) => e.kind === 'htod');
    assert.equal(before.length, 3, `step ${i + 1}: ids + targets + cuSeqlens in one upload, the loss scale, cos | sin in one, before the first launch`);
    assert.equal(inside.length, 0, `step ${i + 1}: no upload between the first launch and the optimizer`);
    inputBuffers.add(before[0]!.dst!);
    scaleBuffers.add(before[1]!.dst!);
    ropeBuffers.add(before[2]!.dst!);
  }
  assert.equal(inputBuffers.size, 1, 'the inputs go to the same device buffer every step');
  assert.equal(scaleBuffers.size, 1, 'the loss scale goes to the same device buffer every step');
  assert.equal(ropeBuffers.size, 1, 'the rope tables go to the same device buffer every step');
  for (let i = 0; i < STEPS; i++) {
    const [want, got] = [cpu.losses[i]!, cuda.losses[i]!];
    assert.ok(Math.abs(got - want) <= BF16_STEP_TOL * Math.abs(want), `step ${i + 1} loss: cuda ${got} vs cpu ${want}`);
  }
});
