// XTuner's param_scheduler as mmengine builds and steps it, written out independently of
// src/optim/schedule.ts: build_iter_from_epoch turns begin/end (epochs) into int(x * epoch_length);
// LinearLR(start_factor 1e-5, total_iters = end - begin - 1) and CosineAnnealingLR(eta_min 0,
// T_max = end - begin) update the lr in their chained forms; each scheduler steps once when built
// and then after every train iteration (ParamSchedulerHook.after_train_iter, by_epoch False), so
// with accumulative_counts the optimizer steps at the lr of the iteration it steps after.
import test from 'node:test';
import assert from 'node:assert/strict';
import { WarmupCosineSchedule, xtunerScheduleIters } from '../../src/optim/schedule.ts';

function mmengine(lr: number, warmupRatio: number, maxEpochs: number, epochLength: number, iters: number): number[] {
  const linEnd = Math.trunc(warmupRatio * maxEpochs * epochLength); // int((warmup_ratio * max_epochs) * epoch_length)
  const cosBegin = linEnd;
  const cosEnd = Math.trunc(maxEpochs * epochLength);
  if (linEnd <= 0) throw new Error('mmengine: end should be larger than begin');
  const s = 1e-5;
  let g = lr;
  const lin = { global: -1, last: -1, total: linEnd - 1 };
  const cos = { global: -1, last: -1, tMax: cosEnd - cosBegin };
  const stepLin = () => {
    lin.global++;
    if (0 <= lin.global && lin.global < linEnd) {
      lin.last++;
      g = lin.last === 0 ? g * s : g * (1 + (1 - s) / (lin.total * s + (lin.last - 1) * (1 - s)));
    }
  };
  const stepCos = () => {
    cos.global++;
    if (cosBegin <= cos.global && cos.global < cosEnd) {
      cos.last++;
      if (cos.last !== 0) g = ((1 + Math.cos((Math.PI * cos.last) / cos.tMax)) / (1 + Math.cos((Math.PI * (cos.last - 1)) / cos.tMax))) * (g - 0) + 0;
    }
  };
  stepLin();
  stepCos(); // built in config order
  const out: number[] = [];
  for (let i = 0; i < iters; i++) {
    out.push(g);
    stepLin();
    stepCos();
  }
  return out;
}

test("XTuner's epoch -> iteration conversion and per-iteration lr, including the last iteration", () => {
  for (const [ratio, epochs, len] of [[0.03, 3, 1001], [0.1, 3, 10], [0.07, 1, 100], [0.03, 1, 67]] as const) {
    const { warmupIters, totalIters } = xtunerScheduleIters(ratio, epochs, len);
    assert.equal(warmupIters, Math.trunc(ratio * epochs * len));
    assert.equal(totalIters, epochs * len);
    const sched = new WarmupCosineSchedule({ lr: 2e-4, totalIters, warmupIters });
    const ref = mmengine(2e-4, ratio, epochs, len, totalIters);
    for (let i = 0; i < totalIters; i++) {
      assert.ok(Math.abs(sched.lrAt(i) - ref[i]!) <= 1e-12 * 2e-4, `ratio ${ratio} epochs ${epochs} len ${len} iter ${i}: ${sched.lrAt(i)} vs ${ref[i]}`);
    }
    // the last iteration's lr is not eta_min: cos(pi (T_max - 1) / T_max)
    const tMax = totalIters - warmupIters;
    assert.ok(Math.abs(sched.lrAt(totalIters - 1) - (2e-4 * (1 + Math.cos((Math.PI * (tMax - 1)) / tMax))) / 2) < 1e-18);
  }
});
