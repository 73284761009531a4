import test from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mergeAdapterToHf } from '../../src/peft/merge.ts';
import { CheckpointReader } from '../../src/io/checkpoint.ts';
import { hostToFloat32 } from '../../src/io/safetensors.ts';
import { XtunerError } from '../../src/errors.ts';
import { tmpName } from '../../src/io/atomic.ts';
import { BASE_MODEL as BASE, FIX, LORA_ADAPTER as ADAPTER, maxAbsDiff, tmpDir } from './helpers.ts';
/** The bound for our merge against PEFT's merge_and_unload. */
const MERGE_TOL = 1e-5;
/** bf16 keeps 8 significant bits: rounding is within 2^-9 relative; twice that leaves room for the f32 merge. */
const BF16_REL = 2 ** -8;

function readAll(dir: string): Map<string, { dtype: string; shape: readonly number[]; values: Float32Array }> {
  const r = CheckpointReader.open(dir);
  try {
    return new Map(r.names().map((n) => {
      const t = r.read(n);
      return [n, { dtype: t.dtype, shape: t.shape, values: hostToFloat32(t) }];
    }));
  } finally {
    r.close();
  }
}

test('merge of llama_forward + lora adapter equals PEFT merge_and_unload (lora/merged)', (t) => {
  const out = path.join(tmpDir(t), 'merged');
  const report = mergeAdapterToHf({ baseDir: BASE, adapterDir: ADAPTER, outDir: out });
  assert.deepEqual(report.files, ['model.safetensors']);
  assert.equal(report.mergedModules.length, 14);
  const ours = readAll(out);
  const ref = readAll(`${FIX}/lora/merged`);
  assert.deepEqual([...ours.keys()].sort(), [...ref.keys()].sort());
  let changed = 0;
  const base = readAll(BASE);
  for (const [name, r] of ref) {
    const o = ours.get(name)!;
    assert.equal(o.dtype, 'F32');
    assert.deepEqual(o.shape, r.shape);
    assert.ok(maxAbsDiff(o.values, r.values) <= MERGE_TOL, `${name}: max abs diff ${maxAbsDiff(o.values, r.values)}`);
    if (maxAbsDiff(base.get(name)!.values, r.values) > 1e-3) changed++;
  }
  assert.equal(changed, 14); // the comparison is not vacuous: 14 weights moved
  assert.deepEqual(report.copied.sort(), ['config.json', 'generation_config.json']);
  assert.equal(fs.readFileSync(path.join(out, 'config.json'), 'utf8'), fs.readFileSync(path.join(BASE, 'config.json'), 'utf8'));
});

test('merge in bfloat16, sharded with an index, config dtype updated', (t) => {
  const out = path.join(tmpDir(t), 'merged');
  const report = mergeAdapterToHf({ baseDir: BASE, adapterDir: ADAPTER, outDir: out, dtype: 'bfloat16', maxShardBytes: 100_000 });
  assert.ok(report.files.length > 2 && report.files.includes('model.safetensors.index.json'));
  const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
  assert.equal(Object.keys(index.weight_map).length, 21);
  const ours = readAll(out);
  const ref = readAll(`${FIX}/lora/merged`);
  let total = 0;
  for (const [name, r] of ref) {
    const o = ours.get(name)!;
    assert.equal(o.dtype, 'BF16');
    total += o.values.length * 2;
    for (let i = 0; i < r.values.length; i++) {
      assert.ok(Math.abs(o.values[i]! - r.values[i]!) <= BF16_REL * Math.abs(r.values[i]!) + 1e-30, `${name}[${i}]`);
    }
  }
  assert.equal(index.metadata.total_size, total);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.equal(config.dtype, 'bfloat16');
});

test('an adapter that does not fit the base is refused, naming modules and shapes', (t) => {
  const dir = tmpDir(t);
  // Qwen2 fixture: same attention shapes, but intermediate_size 160 instead of 176
  assert.throws(
    () => mergeAdapterToHf({ baseDir: `${FIX}/qwen2/model`, adapterDir: ADAPTER, outDir: path.join(dir, 'a') }),
    (e: unknown) => e instanceof XtunerError && /6 with other shapes: model\.layers\.0\.mlp\.down_proj: base weight \[64, 160\], adapter \[64, 176\]/.test(e.message),
  );
  // InternLM2 fixture: other module names
  assert.throws(
    () => mergeAdapterToHf({ baseDir: `${FIX}/internlm2/model`, adapterDir: ADAPTER, outDir: path.join(dir, 'b') }),
    (e: unknown) => e instanceof XtunerError && /14 module\(s\) missing: model\.layers\.0\.mlp\.down_proj/.test(e.message),
  );
  assert.throws(
    () => mergeAdapterToHf({ baseDir: BASE, adapterDir: path.join(dir, 'nope'), outDir: path.join(dir, 'c') }),
    (e: unknown) => e instanceof XtunerError && /adapter folder not found/.test(e.message),
  );
  assert.throws(
    () => mergeAdapterToHf({ baseDir: BASE, adapterDir: ADAPTER, outDir: BASE }),
    (e: unknown) => e instanceof XtunerError && /is the base or adapter folder/.test(e.message),
  );
  assert.equal(fs.existsSync(path.join(dir, 'a', 'model.safetensors')), false);
});

test('a merge cut short in the folder of an earlier merge leaves no config.json: no folder that loads with mixed shards', (t) => {
  const out = path.join(tmpDir(t), 'merged');
  const first = mergeAdapterToHf({ baseDir: BASE, adapterDir: ADAPTER, outDir: out, dtype: 'float32', maxShardBytes: 100_000 });
  const shards = first.files.filter((f) => f.endsWith('.safetensors'));
  assert.ok(shards.length >= 2);
  // the second merge fails writing its second shard (as a full disk or a kill would stop it)
  const second = path.join(out, shards[1]!);
  fs.mkdirSync(tmpName(second)); // its temporary file cannot be opened: EISDIR
  assert.throws(() => mergeAdapterToHf({ baseDir: BASE, adapterDir: ADAPTER, outDir: out, dtype: 'bfloat16', maxShardBytes: 50_000 }));
  fs.rmSync(tmpName(second), { recursive: true });
  assert.ok(!fs.existsSync(path.join(out, 'config.json')), 'a config.json beside new and old shards would load as a model');
  // run again, it completes
  mergeAdapterToHf({ baseDir: BASE, adapterDir: ADAPTER, outDir: out, dtype: 'bfloat16', maxShardBytes: 50_000 });
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).dtype, 'bfloat16');
});
