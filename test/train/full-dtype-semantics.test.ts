// Full fine-tuning's weights. XTuner's full configs load the model in float32 (no torch_dtype) and
// train it under AmpOptimWrapper: the parameters AdamW updates stay float32, so at XTuner's full-FT
// lr (2e-5) the first AdamW step moves every weight whose gradient is not ~0 by about lr
// (m_hat / sqrt(v_hat) = sign(g): torch.optim.AdamW step 1). Stored as bfloat16, most of those
// updates are under half a bf16 step and lost, so full fine-tuning defaults to float32 on CUDA too.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { hostToFloat32, SafetensorsReader } from '../../src/io/safetensors.ts';
import { loadCheckpoint } from '../../src/train/checkpoint.ts';
import { defaultDtype } from '../../src/train/setup.ts';
import { trainerFixture } from './fixture.ts';

const { config, workDir, run, model } = trainerFixture('xtuner-full-bf16-sem-');

test('full fine-tuning keeps float32 weights unless the config says otherwise, on CUDA too; LoRA and QLoRA run bfloat16 there', () => {
  assert.equal(defaultDtype(config({ lora: null }), 'cuda'), 'float32');
  assert.equal(defaultDtype(config({ lora: null, dtype: 'bfloat16' }), 'cuda'), 'bfloat16');
  assert.equal(defaultDtype(config({}), 'cuda'), 'bfloat16');
  assert.equal(defaultDtype(config({}), 'cpu'), 'float32');
});

test('full fine-tuning in the default dtype: one AdamW step at lr 2e-5 moves the weights, as XTuner\'s float32 ones', async () => {
  const cfg = config({ lora: null, max_iters: 1, accumulative_counts: 1, warmup_ratio: 0, lr: 2e-5 });
  const dir = workDir('bf16');
  await run(cfg, dir);
  const name = 'model.layers.0.self_attn.q_proj.weight';
  const reader = SafetensorsReader.open(path.join(model, 'model.safetensors'));
  const initial = hostToFloat32(reader.read(name));
  reader.close();
  const after = hostToFloat32(loadCheckpoint(path.join(dir, 'iter_1')).trainable.get(name)!);
  let moved = 0;
  for (let i = 0; i < after.length; i++) if (after[i] !== initial[i]) moved++;
  assert.ok(moved / after.length >= 0.99, `${moved} of ${after.length} weights of ${name} moved `);
});
