// Resume semantics checked against mmengine's Runner.resume: the checkpoint's seed is the run's
// seed ("The value of random seed in the checkpoint ... is different from the value in
// `randomness` config": mmengine uses resumed_seed), so resuming continues the interrupted run.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { trainerFixture } from './fixture.ts';

const { config, workDir, run } = trainerFixture('xtuner-resume-sem-');

test('resume with another --seed continues the interrupted run (mmengine resumes with the checkpoint seed) or is refused', async () => {
  const cfg = config({ max_iters: 6, accumulative_counts: 1, lr: 0.05, seed: 0 });
  const whole = await run(cfg, workDir('whole'));
  const dir = workDir('split');
  const first = await run(cfg, dir, { stopAt: 3 });
  let second: Awaited<ReturnType<typeof run>>;
  try {
    second = await run({ ...cfg, seed: 1 }, dir, { resume: path.join(dir, 'iter_3') });
  } catch (err) {
    assert.match(String((err as Error).message), /seed/); // refused, naming the seed: acceptable
    return;
  }
  assert.deepEqual([...first.losses, ...second.losses], whole.losses, 'the resumed run trained on other batches than the run it continues');
});

test('after a resume between two log lines, the next logs.jsonl line is the one an uninterrupted run writes', async () => {
  // logger.ts: loss is "mean of the iterations' losses since the last log line" (mmengine's
  // LogProcessor: the mean over the window of the last log_interval iterations); README: resumed
  // runs continue exactly.
  const cfg = config({ max_iters: 8, accumulative_counts: 1, lr: 0.05, log_interval: 4 });
  const read = (dir: string) =>
    fs.readFileSync(path.join(dir, 'logs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { iter: number; loss: number; grad_norm: number | null });
  const wholeDir = workDir('log-whole');
  const whole = await run(cfg, wholeDir);
  const dir = workDir('log-split');
  await run(cfg, dir, { stopAt: 6 });
  await run(cfg, dir, { resume: 'auto' });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const want = mean(whole.losses.slice(4, 8)); // iterations 5..8
  assert.ok(Math.abs(read(wholeDir).find((l) => l.iter === 8)!.loss - want) < 1e-12);
  const got = read(dir).find((l) => l.iter === 8)!;
  assert.ok(Math.abs(got.loss - want) < 1e-12, `iteration 8's line: loss ${got.loss}, an uninterrupted run logs ${want} (mean of iterations 5..8)`);
});

test('resume with other AdamW betas continues with the checkpoint optimizer (torch Optimizer.load_state_dict restores param_groups) or is refused', async () => {
  const cfg = config({ max_iters: 6, accumulative_counts: 1, lr: 0.05 });
  const whole = await run(cfg, workDir('betas-whole'));
  const dir = workDir('betas-split');
  const first = await run(cfg, dir, { stopAt: 3 });
  let second: Awaited<ReturnType<typeof run>>;
  try {
    second = await run({ ...cfg, betas: [0.5, 0.9] }, dir, { resume: path.join(dir, 'iter_3') });
  } catch (err) {
    assert.match(String((err as Error).message), /beta/); // refused, naming betas: acceptable
    return;
  }
  assert.deepEqual([...first.losses, ...second.losses], whole.losses, 'the resumed run stepped with the new config betas, silently');
});
