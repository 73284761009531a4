import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatDuration, TrainLogger, type StepRecord } from '../../src/train/logger.ts';

const record: StepRecord = {
  iter: 10, maxIters: 100, epoch: 1, loss: 1.23456789, lr: 2e-4, gradNorm: 0.5, tokens: 4096,
  tokensPerSec: 2048, secPerIter: 0.5, etaSec: 3725, memoryMB: 12.3, rssMB: 250,
};

function capture(isTTY: boolean) {
  let text = '';
  return { out: { write: (s: string) => ((text += s), true), isTTY, columns: 100 }, text: () => text };
}

test('ETA is h:mm:ss', () => {
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(formatDuration(59.6), '0:01:00');
  assert.equal(formatDuration(Number.NaN), '--:--:--');
});

test('each logged step is one JSON line with the exact loss, and one terminal line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-log-'));
  const c = capture(false);
  const logger = new TrainLogger(dir, c.out);
  logger.progress(5, 100, 1.5, 10); // not a TTY: no bar
  logger.step(record);
  const lines = fs.readFileSync(path.join(dir, 'logs.jsonl'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 1);
  const j = JSON.parse(lines[0]!);
  assert.equal(j.loss, 1.23456789);
  assert.equal(j.iter, 10);
  assert.equal(j.grad_norm, 0.5);
  assert.equal(j.eta_sec, 3725);
  assert.equal(c.text(), 'Iter(train) [ 10/100]  epoch: 1  lr: 2.0000e-4  eta: 1:02:05  time: 0.500  loss: 1.2346  grad_norm: 0.5000  tokens/s: 2048  memory: 12 MB (rss 250 MB)\n');
});

test('an iteration logged with no optimizer step since the last line has no grad norm', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-log-'));
  const c = capture(false);
  new TrainLogger(dir, c.out).step({ ...record, gradNorm: null });
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'logs.jsonl'), 'utf8')).grad_norm, null);
  assert.equal(c.text(), 'Iter(train) [ 10/100]  epoch: 1  lr: 2.0000e-4  eta: 1:02:05  time: 0.500  loss: 1.2346  tokens/s: 2048  memory: 12 MB (rss 250 MB)\n');
});

test('on a terminal the progress bar is redrawn in place and erased before messages', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-log-'));
  const c = capture(true);
  const logger = new TrainLogger(dir, c.out);
  logger.progress(50, 100, 1.5, 10);
  assert.match(c.text(), /^\r\x1b\[2K█+░+ 50\/100  loss 1\.5000  eta 0:00:10$/);
  logger.info('saved');
  assert.ok(c.text().endsWith('\r\x1b[2Ksaved\n'));
});
