// Bad model folders and bad forward arguments: each is one XtunerError naming what is wrong.

import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import { CheckpointReader, writeCheckpoint } from '../../src/io/checkpoint.ts';
import type { HostTensor } from '../../src/io/safetensors.ts';
import { createModel, loadModel } from '../../src/models/index.ts';
import { zeros } from '../../src/tensor/index.ts';
import { MODELS } from './fixtures.ts';

const LLAMA = `${MODELS}/llama_forward/model`;
const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A copy of the llama fixture folder with its config and tensors edited. */
function variant(edit: { config?: (c: Record<string, unknown>) => void; tensors?: (t: Map<string, HostTensor>) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-bad-'));
  dirs.push(dir);
  const config = JSON.parse(fs.readFileSync(`${LLAMA}/config.json`, 'utf8'));
  edit.config?.(config);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const r = CheckpointReader.open(LLAMA);
  const tensors = new Map(r.names().map((n) => [n, r.read(n)]));
  r.close();
  edit.tensors?.(tensors);
  writeCheckpoint(dir, tensors);
  return dir;
}

async function rejects(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof XtunerError, `expected XtunerError, got ${String(e)}`);
    const text = `${e.message} ${e.hint ?? ''}`;
    for (const s of parts) assert.ok(text.includes(s), `"${text}" lacks "${s}"`);
    return true;
  });
}

function throwsX(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => e instanceof XtunerError && parts.every((s) => e.message.includes(s)));
}

test('unknown model_type lists the supported ones', async () => {
  const dir = variant({ config: (c) => (c.model_type = 'gpt2') });
  await rejects(loadModel(dir), 'gpt2', 'llama', 'mistral', 'qwen2', 'internlm2');
});

test('a tensor of the wrong shape is named with both shapes', async () => {
  const dir = variant({
    tensors: (t) => t.set('model.layers.1.self_attn.k_proj.weight', { dtype: 'F32', shape: [16, 64], data: new Float32Array(16 * 64) }),
  });
  await rejects(loadModel(dir), 'model.layers.1.self_attn.k_proj.weight', '[16, 64]', '[32, 64]');
});

test('a missing tensor and an unexpected tensor are named', async () => {
  await rejects(loadModel(variant({ tensors: (t) => t.delete('model.norm.weight') })), 'model.norm.weight');
  const extra = variant({ tensors: (t) => t.set('model.layers.0.self_attn.q_proj.bias', { dtype: 'F32', shape: [64], data: new Float32Array(64) }) });
  await rejects(loadModel(extra), 'model.layers.0.self_attn.q_proj.bias');
});

test('missing folder, missing config.json, truncated weights', async () => {
  await rejects(loadModel('/nonexistent/model'), '/nonexistent/model', 'not found');
  const noConfig = variant({});
  fs.rmSync(path.join(noConfig, 'config.json'));
  await rejects(loadModel(noConfig), 'config.json');
  const cut = variant({});
  const file = path.join(cut, 'model.safetensors');
  fs.truncateSync(file, fs.statSync(file).size - 100);
  await rejects(loadModel(cut), file, 'truncated');
});

test('bad forward arguments: ids out of vocabulary, ragged rows, labels, cuSeqlens', () => {
  const m = createModel({ model_type: 'qwen2', vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 });
  throwsX(() => m.forward([[1, 2, 50]]), 'inputIds[0][2] = 50', '[0, 50)');
  throwsX(() => m.forward([[1, -1]]), 'inputIds[0][1] = -1');
  throwsX(() => m.forward([[1, 2], [3]]), 'row 1');
  throwsX(() => m.forward([[1, 2]], { labels: [[1, 2, 3]] }), 'labels', '[1, 3]');
  throwsX(() => m.forward([[1, 2]], { labels: [[1, 77]] }), 'labels[0][1] = 77');
  throwsX(() => m.forward([[1, 2, 3]], { cuSeqlens: [0, 2] }), 'cuSeqlens');
  throwsX(() => m.forward({ data: new Int32Array(5), shape: [2, 3] }), 'inputIds', 'shape [2, 3]');
  throwsX(() => m.generate([1, 99], { maxNewTokens: 2 }), 'promptIds[1] = 99');
  throwsX(() => m.generate([1], { maxNewTokens: 2, topP: 0 }), 'topP');
});

test('device cuda without a CUDA backend is refused before any weight is read', async (t) => {
  try {
    zeros([1], { device: 'cuda' }).dispose();
    t.skip('this build has a CUDA backend');
    return;
  } catch {
    // expected on machines without the CUDA backend
  }
  await rejects(loadModel(LLAMA, { device: 'cuda' }), 'cuda');
});
