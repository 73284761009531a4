import test from 'node:test';
import assert from 'node:assert/strict';
import { WarmupCosineSchedule, xtunerScheduleIters } from '../../src/optim/schedule.ts';
import { XtunerError } from '../../src/errors.ts';

const REL = 1e-9;

/**
 * mmengine's chained updates, written out as its code runs them: the scheduler steps once at
 * construction, then after every iteration; LinearLR covers [0, W), CosineAnnealingLR [W, E).
 */
function mmengineLrs(base: number, w: number, e: number, s: number, etaMin: number): number[] {
  let lr = base;
  let global = -1;
  let linLast = -1;
  let cosLast = -1;
  const totalIters = w - 1;
  const tMax = e - w;
  const out: number[] = [];
  const step = () => {
    global++;
    if (global >= 0 && global < w) {
      linLast++;
      lr = linLast === 0 ? lr * s : lr * (1 + (1 - s) / (totalIters * s + (linLast - 1) * (1 - s)));
    }
    if (global >= w && global < e) {
      cosLast++;
      if (cosLast !== 0) {
        lr = ((1 + Math.cos((Math.PI * cosLast) / tMax)) / (1 + Math.cos((Math.PI * (cosLast - 1)) / tMax))) * (lr - etaMin) + etaMin;
      }
    }
  };
  step();
  for (let i = 0; i < e + 3; i++) {
    out.push(lr);
    step();
  }
  return out;
}

test('warm-up then cosine equals mmengine LinearLR + CosineAnnealingLR, iteration by iteration', () => {
  for (const [w, e, etaMin] of [[3, 10, 0], [1, 6, 0], [2, 2 + 5, 1e-6], [30, 1000, 2e-5]] as const) {
    const sched = new WarmupCosineSchedule({ lr: 2e-4, totalIters: e, warmupIters: w, etaMin });
    const ref = mmengineLrs(2e-4, w, e, 1e-5, etaMin);
    for (let i = 0; i < ref.length; i++) {
      const got = sched.lr;
      assert.ok(Math.abs(got - ref[i]!) <= REL * 2e-4, `W=${w} E=${e} iter ${i}: ${got} vs mmengine ${ref[i]}`);
      sched.step();
    }
  }
});

test('hand-computed values: start factor, end of warm-up, cosine midpoint', () => {
  const s = new WarmupCosineSchedule({ lr: 1, totalIters: 11, warmupIters: 3 });
  assert.equal(s.lrAt(0), 1e-5);
  assert.ok(Math.abs(s.lrAt(1) - (1e-5 + (1 - 1e-5) / 2)) < 1e-15);
  assert.equal(s.lrAt(2), 1);
  assert.equal(s.lrAt(3), 1);
  assert.ok(Math.abs(s.lrAt(7) - 0.5) < 1e-15); // k = 4 of T_max = 8
  const none = new WarmupCosineSchedule({ lr: 1, totalIters: 4, warmupIters: 0 });
  assert.equal(none.lrAt(0), 1);
  assert.ok(Math.abs(none.lrAt(2) - 0.5) < 1e-15);
});

test('XTuner iteration counts truncate like mmengine build_iter_from_epoch', () => {
  assert.deepEqual(xtunerScheduleIters(0.03, 3, 1000), { warmupIters: 90, totalIters: 3000 });
  assert.deepEqual(xtunerScheduleIters(0.03, 1, 20), { warmupIters: 0, totalIters: 20 });
});

test('state round-trips for resume and refuses a different schedule', () => {
  const a = new WarmupCosineSchedule({ lr: 1e-3, totalIters: 50, warmupIters: 5 });
  for (let i = 0; i < 17; i++) a.step();
  const state = JSON.parse(JSON.stringify(a.stateDict()));
  const b = new WarmupCosineSchedule({ lr: 1e-3, totalIters: 50, warmupIters: 5 });
  b.loadStateDict(state);
  assert.equal(b.iter, 17);
  assert.equal(b.lr, a.lr);
  const c = new WarmupCosineSchedule({ lr: 1e-3, totalIters: 60, warmupIters: 5 });
  assert.throws(() => c.loadStateDict(state), (e: unknown) => e instanceof XtunerError && /totalIters is 50, this run's is 60/.test(e.message));
});

test('bad schedules are refused with the argument named', () => {
  const msg = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof XtunerError && re.test(e.message));
  msg(() => new WarmupCosineSchedule({ lr: 1, totalIters: 10, warmupIters: 10 }), /warm-up \(10 iterations\) must be shorter than the run \(10/);
  msg(() => new WarmupCosineSchedule({ lr: -1, totalIters: 10, warmupIters: 1 }), /lr must be/);
  msg(() => new WarmupCosineSchedule({ lr: 1, totalIters: 0, warmupIters: 0 }), /totalIters must be/);
  msg(() => new WarmupCosineSchedule({ lr: 1, totalIters: 10, warmupIters: 1, startFactor: 2 }), /startFactor/);
});
