import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XtunerError } from '../../src/errors.ts';
import {
  findCachedSnapshot,
  hfHubCacheDir,
  isRepoId,
  resolveModelPath,
  type DownloadProgress,
} from '../../src/io/hf-hub.ts';
import { deadEndpoint, startFakeHub, type FakeRepo } from './fake-hub.ts';
import { tmpDir } from '../tmp-dir.ts';

const SHA = '0123456789abcdef0123456789abcdef01234567';
const WEIGHTS = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);

function tinyRepo(extra: Partial<FakeRepo> = {}): FakeRepo {
  return {
    sha: SHA,
    files: {
      'config.json': '{"model_type":"llama"}',
      'tokenizer.json': '{"version":"1.0"}',
      'model.safetensors': WEIGHTS,
      'pytorch_model.bin': 'duplicate weights, not needed',
      'README.md': '# card',
      '.gitattributes': '*.bin filter=lfs',
      'original/params.json': '{}',
    },
    ...extra,
  };
}

const quiet = () => {};

async function rejectsWith(promise: Promise<unknown>, pattern: RegExp, hintPattern?: RegExp): Promise<XtunerError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof XtunerError, `expected an XtunerError, got ${String(err)}`);
    assert.match(err.message, pattern);
    if (hintPattern) assert.match(err.hint ?? '', hintPattern);
    return err;
  }
  assert.fail('expected a rejection');
}

test('cache folder follows huggingface_hub: HF_HUB_CACHE, then HF_HOME/hub, then XDG/home', () => {
  assert.equal(hfHubCacheDir({ HF_HUB_CACHE: '/a', HF_HOME: '/b' }), '/a');
  assert.equal(hfHubCacheDir({ HF_HOME: '/b' }), path.join('/b', 'hub'));
  assert.equal(hfHubCacheDir({ XDG_CACHE_HOME: '/c' }), path.join('/c', 'huggingface', 'hub'));
  assert.equal(hfHubCacheDir({}), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
});

test('repo ids', () => {
  for (const id of ['internlm/internlm2-chat-1_8b', 'Qwen/Qwen2.5-0.5B-Instruct', 'gpt2']) assert.ok(isRepoId(id), id);
  for (const id of ['a/b/c', '../x', '/abs', 'a/', 'org/..', 'with space']) assert.ok(!isRepoId(id), id);
});

test('a local folder is used as it is; a missing one or a file is a clear error', async () => {
  const dir = tmpDir();
  assert.equal(await resolveModelPath(dir, { offline: true }), dir);
  fs.writeFileSync(path.join(dir, 'file.txt'), 'x');
  await rejectsWith(resolveModelPath(path.join(dir, 'file.txt')), /is a file; expected a model folder/);
  await rejectsWith(resolveModelPath('./no/such/model'), /model folder \.\/no\/such\/model does not exist/);
});

test('a model in the HF cache layout is found through refs/main without the network', async () => {
  const cacheDir = tmpDir();
  const repoDir = path.join(cacheDir, 'models--org--tiny');
  fs.mkdirSync(path.join(repoDir, 'snapshots', SHA), { recursive: true });
  fs.mkdirSync(path.join(repoDir, 'refs'));
  fs.writeFileSync(path.join(repoDir, 'refs', 'main'), `${SHA}\n`);
  const endpoint = await deadEndpoint();
  const snapshot = path.join(repoDir, 'snapshots', SHA);
  assert.equal(await resolveModelPath('org/tiny', { cacheDir, endpoint }), snapshot);
  assert.equal(findCachedSnapshot('org/tiny', { cacheDir, revision: SHA }), snapshot);
  assert.equal(findCachedSnapshot('org/tiny', { cacheDir, revision: 'v2' }), null);
});

test('download: the files a model needs, into the cache layout, with progress; then served from the cache', async () => {
  const hub = await startFakeHub({ 'org/tiny': tinyRepo() });
  try {
    const cacheDir = tmpDir();
    const progress: DownloadProgress[] = [];
    const snapshot = await resolveModelPath('org/tiny', { cacheDir, endpoint: hub.endpoint, onProgress: (p) => progress.push(p) });
    assert.equal(snapshot, path.join(cacheDir, 'models--org--tiny', 'snapshots', SHA));
    assert.deepEqual(fs.readdirSync(snapshot).sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
    assert.deepEqual(new Uint8Array(fs.readFileSync(path.join(snapshot, 'model.safetensors'))), WEIGHTS);
    assert.equal(fs.readFileSync(path.join(cacheDir, 'models--org--tiny', 'refs', 'main'), 'utf8'), SHA);
    const done = progress.filter((p) => p.done);
    assert.deepEqual(done.map((p) => [p.file, p.index, p.count]).sort(), [
      ['config.json', 1, 3],
      ['model.safetensors', 3, 3],
      ['tokenizer.json', 2, 3],
    ]);
    assert.equal(done.find((p) => p.file === 'model.safetensors')!.bytes, WEIGHTS.length);
    // Files went through the hub's redirect, as large files do on huggingface.co.
    assert.ok(hub.requests.includes(`/cdn/org/tiny/resolve/${SHA}/model.safetensors`));

    const before = hub.requests.length;
    assert.equal(await resolveModelPath('org/tiny', { cacheDir, endpoint: hub.endpoint, onProgress: quiet }), snapshot);
    assert.equal(hub.requests.length, before, 'a cached model is not fetched again');
  } finally {
    await hub.close();
  }
});

test('an interrupted download resumes: files already complete are not fetched again', async () => {
  const hub = await startFakeHub({ 'org/tiny': tinyRepo() });
  try {
    const cacheDir = tmpDir();
    const snapshot = path.join(cacheDir, 'models--org--tiny', 'snapshots', SHA);
    fs.mkdirSync(snapshot, { recursive: true });
    fs.writeFileSync(path.join(snapshot, 'config.json'), '{"model_type":"llama"}');
    assert.equal(findCachedSnapshot('org/tiny', { cacheDir }), null, 'no refs/main yet: not complete');
    await resolveModelPath('org/tiny', { cacheDir, endpoint: hub.endpoint, onProgress: quiet });
    assert.ok(!hub.requests.some((r) => r.endsWith('/config.json')));
    assert.ok(hub.requests.some((r) => r.endsWith('/model.safetensors')));
  } finally {
    await hub.close();
  }
});

test('a transfer cut off half-way fails clearly and leaves no partial file', async () => {
  const hub = await startFakeHub({ 'org/tiny': tinyRepo({ truncate: ['model.safetensors'] }) });
  try {
    const cacheDir = tmpDir();
    await rejectsWith(
      resolveModelPath('org/tiny', { cacheDir, endpoint: hub.endpoint, onProgress: quiet }),
      /model\.safetensors broke off after \d+ of 300000 bytes/,
      /run the command again/,
    );
    const snapshot = path.join(cacheDir, 'models--org--tiny', 'snapshots', SHA);
    assert.ok(!fs.readdirSync(snapshot).some((f) => f.startsWith('model.safetensors')));
    assert.equal(findCachedSnapshot('org/tiny', { cacheDir }), null);
  } finally {
    await hub.close();
  }
});

test('offline: no server answering gives one clear error naming the model, the endpoint and the way out', async () => {
  const endpoint = await deadEndpoint();
  const err = await rejectsWith(
    resolveModelPath('org/tiny', { cacheDir: tmpDir(), endpoint, onProgress: quiet }),
    /cannot download org\/tiny from http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED \(is this machine offline\?\)/,
    /local model folder/,
  );
  assert.doesNotMatch(err.message, /\n/);
});

test('HF_HUB_OFFLINE: an uncached model is an error without any request', async () => {
  const hub = await startFakeHub({ 'org/tiny': tinyRepo() });
  try {
    await rejectsWith(
      resolveModelPath('org/tiny', { cacheDir: tmpDir(), endpoint: hub.endpoint, offline: true }),
      /not in the Hugging Face cache .*models--org--tiny.*HF_HUB_OFFLINE/,
    );
    assert.equal(hub.requests.length, 0);
  } finally {
    await hub.close();
  }
});

test('unknown and gated models: 404 and 401 become errors that say what to do; the token is sent', async () => {
  const hub = await startFakeHub({ 'org/gated': tinyRepo({ token: 'secret' }) });
  try {
    const cacheDir = tmpDir();
    await rejectsWith(resolveModelPath('org/nope', { cacheDir, endpoint: hub.endpoint }), /has no model org\/nope .*HTTP 404/);
    await rejectsWith(
      resolveModelPath('org/gated', { cacheDir, endpoint: hub.endpoint, token: 'wrong' }),
      /refused model org\/gated .*HTTP 401.*gated or private/,
      /HF_TOKEN/,
    );
    const snapshot = await resolveModelPath('org/gated', { cacheDir, endpoint: hub.endpoint, token: 'secret', onProgress: quiet });
    assert.ok(fs.existsSync(path.join(snapshot, 'model.safetensors')));
  } finally {
    await hub.close();
  }
});

test('a repository without config.json is not taken for a model', async () => {
  const hub = await startFakeHub({ 'org/data': { sha: SHA, files: { 'train.jsonl': '{}' } } });
  try {
    await rejectsWith(resolveModelPath('org/data', { cacheDir: tmpDir(), endpoint: hub.endpoint }), /has no config\.json/);
  } finally {
    await hub.close();
  }
});
