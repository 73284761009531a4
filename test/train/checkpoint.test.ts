import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadCheckpoint, saveCheckpoint, type CheckpointData } from '../../src/train/checkpoint.ts';
import { listCheckpoints, readLastCheckpoint } from '../../src/train/work-dir.ts';
import { XtunerError } from '../../src/errors.ts';
import { tmpDir } from '../tmp-dir.ts';

function data(iter: number): CheckpointData {
  return {
    iter,
    trainable: [['model.layers.0.self_attn.q_proj.lora_A.weight', { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, iter]) }]],
    optimizer: [['exp_avg.model.layers.0.self_attn.q_proj.lora_A.weight', { dtype: 'F32', shape: [2, 3], data: new Float32Array(6).fill(iter / 10) }]],
    grads: null,
    state: { dataPosition: { epoch: 1, index: iter * 2 }, rng: [iter, 7] },
  };
}

test('a saved checkpoint reads back bit for bit, with its state', async () => {
  const work = tmpDir();
  const dir = await saveCheckpoint(work, data(3), 2);
  assert.equal(path.basename(dir), 'iter_3');
  assert.equal(readLastCheckpoint(work), dir);
  const ck = loadCheckpoint(dir);
  assert.equal(ck.iter, 3);
  assert.deepEqual([...(ck.trainable.get('model.layers.0.self_attn.q_proj.lora_A.weight')!.data as Float32Array)], [1, 2, 3, 4, 5, 3]);
  assert.deepEqual([...(ck.optimizer.get('exp_avg.model.layers.0.self_attn.q_proj.lora_A.weight')!.data as Float32Array)], new Array(6).fill(Math.fround(0.3)));
  assert.deepEqual(ck.state, { dataPosition: { epoch: 1, index: 6 }, rng: [3, 7] });
  assert.equal(ck.grads, null);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['optimizer.safetensors', 'state.json', 'trainable.safetensors']);
});

test('gradients accumulated between optimizer steps travel with the checkpoint, checked like the rest', async () => {
  const work = tmpDir();
  const grad = new Float32Array([0.5, -1, 2, 1e-8, 0, 3]);
  const dir = await saveCheckpoint(work, { ...data(3), grads: [['model.layers.0.self_attn.q_proj.lora_A.weight', { dtype: 'F32', shape: [2, 3], data: grad }]] }, 2);
  const ck = loadCheckpoint(dir);
  assert.deepEqual(ck.grads!.get('model.layers.0.self_attn.q_proj.lora_A.weight')!.data, grad);
  assert.equal(loadCheckpoint(dir, { optimizer: false }).grads, null, 'convert reads only the weights');
  const file = path.join(dir, 'grads.safetensors');
  fs.truncateSync(file, fs.statSync(file).size - 4);
  assert.throws(() => loadCheckpoint(dir), /iter_3 is not usable: grads.safetensors has \d+ bytes, expected \d+/);
});

test('a checkpoint of another format version is refused', async () => {
  const dir = await saveCheckpoint(tmpDir(), data(1), 0);
  const state = path.join(dir, 'state.json');
  fs.writeFileSync(state, fs.readFileSync(state, 'utf8').replace(/"version": \d+/, '"version": 1'));
  assert.throws(() => loadCheckpoint(dir), /iter_1 is not usable: version 1 is not supported \(this xtuner-ts reads 2\)/);
});

test('save_total_limit keeps the newest checkpoints only', async () => {
  const work = tmpDir();
  for (const it of [2, 4, 6, 8]) await saveCheckpoint(work, data(it), 2);
  assert.deepEqual(listCheckpoints(work).map((d) => path.basename(d)), ['iter_6', 'iter_8']);
  for (const it of [10, 12]) await saveCheckpoint(work, data(it), 0);
  assert.deepEqual(listCheckpoints(work).map((d) => path.basename(d)), ['iter_6', 'iter_8', 'iter_10', 'iter_12']);
});

test('a disk that fills up while saving leaves the previous checkpoint and last_checkpoint intact', async () => {
  const work = tmpDir();
  const good = await saveCheckpoint(work, data(5), 1);
  const before = fs.readFileSync(path.join(good, 'trainable.safetensors'));
  const full: CheckpointData = {
    ...data(10),
    optimizer: [
      [
        'exp_avg.x',
        {
          dtype: 'F32',
          shape: [4],
          data: () => {
            const err = new Error('no space left on device, write') as NodeJS.ErrnoException;
            err.code = 'ENOSPC';
            throw err;
          },
        },
      ],
    ],
  };
  await assert.rejects(saveCheckpoint(work, full, 1), (err: unknown) => {
    assert.ok(err instanceof XtunerError);
    assert.match(err.message, /could not save checkpoint .*iter_10: ENOSPC/);
    assert.match(err.hint ?? '', /iter_5 is intact/);
    return true;
  });
  assert.equal(readLastCheckpoint(work), good);
  assert.deepEqual(fs.readdirSync(work).sort(), ['iter_5', 'last_checkpoint']);
  assert.deepEqual(fs.readFileSync(path.join(good, 'trainable.safetensors')), before);
  assert.equal(loadCheckpoint(good).iter, 5);
});

test('a damaged, truncated or foreign checkpoint is refused with one clear message', async () => {
  const work = tmpDir();
  const dir = await saveCheckpoint(work, data(1), 0);
  const file = path.join(dir, 'trainable.safetensors');
  const bytes = fs.readFileSync(file);

  const flipped = Buffer.from(bytes);
  flipped[flipped.length - 1]! ^= 0xff;
  fs.writeFileSync(file, flipped);
  assert.throws(() => loadCheckpoint(dir), /iter_1 is not usable: trainable.safetensors does not match its SHA-256/);

  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 4));
  assert.throws(() => loadCheckpoint(dir), /trainable.safetensors has \d+ bytes, expected \d+ \(truncated/);

  fs.writeFileSync(path.join(dir, 'state.json'), '{"format": "xtuner-ts-checkpoint", ');
  assert.throws(() => loadCheckpoint(dir), (e: unknown) => e instanceof XtunerError && /state.json is not valid JSON/.test(e.message));

  fs.rmSync(path.join(dir, 'state.json'));
  assert.throws(() => loadCheckpoint(dir), /state.json is missing/);
  assert.throws(() => loadCheckpoint(path.join(work, 'iter_99')), /does not exist/);
});
