// Hub repositories (models and datasets): a Hugging Face repo id found in the standard HF cache
// (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; layout
// `models--org--name/` or `datasets--org--name/`, `refs/<revision>` -> `snapshots/<commit>/`),
// else downloaded from the hub (`$HF_ENDPOINT`, default https://huggingface.co; API
// `/api/{models|datasets}/{id}/revision/{rev}`, files at `[/datasets]/{id}/resolve/{sha}/{file}`)
// into that same layout, one file at a time
// through `<file>.tmp-<pid>` and a rename, `refs/<revision>` written last, so an interrupted
// download is never mistaken for a complete one and resumes where it stopped.
// Files are stored in the snapshot folder itself (the cache's no-symlink form, which Python's
// huggingface_hub reads too). Only what is needed is fetched: for a model the top-level config and
// tokenizer files and safetensors weights, not PyTorch/TF/ONNX duplicates; for a dataset the files
// the caller picks (src/data/sources.ts: the train split's data files).
// resolveModelPath also takes a local model folder; local data files are src/data's business.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { XtunerError } from '../errors.ts';
import { writeFileAtomic, writeStreamAtomicAsync } from './atomic.ts';

export interface DownloadProgress {
  repoId: string;
  file: string;
  /** 1-based index of the file among those to fetch. */
  index: number;
  count: number;
  bytes: number;
  /** From Content-Length; null when the server did not say. */
  total: number | null;
  done: boolean;
}

export interface HubOptions {
  /** Branch, tag or commit; default 'main'. */
  revision?: string;
  /** Default: hfHubCacheDir(). */
  cacheDir?: string;
  /** Default: $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default: $HF_TOKEN. Sent as a Bearer token (gated and private models). */
  token?: string;
  /** Never download; default: $HF_HUB_OFFLINE is 1/true/yes/on. */
  offline?: boolean;
  /** Called as bytes arrive; default: a progress line on stderr. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Milliseconds without a byte before a transfer is abandoned; default 60 s. */
  stallTimeoutMs?: number;
}

export type RepoType = 'model' | 'dataset';

export interface SnapshotOptions extends HubOptions {
  /** Default 'model'. */
  repoType?: RepoType;
  /**
   * Which of the repo's files (paths relative to its root) to fetch; may throw an XtunerError
   * saying what was expected. Default: a model's config, tokenizer and safetensors files; all
   * non-hidden files of a dataset.
   */
  pickFiles?: (files: string[]) => string[];
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const API_TIMEOUT_MS = 30_000;
const DEFAULT_STALL_MS = 60_000;
/** Top-level files a model folder needs: configs, tokenizers, chat templates, safetensors weights. */
const WANTED_FILE = /^[^/]+\.(json|safetensors|model|txt|tiktoken|jinja)$/;

/** The hub cache folder, as huggingface_hub computes it. */
export function hfHubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  const cache = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'huggingface', 'hub');
}

export function hfEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/** HF_HUB_OFFLINE, and for datasets also HF_DATASETS_OFFLINE (as the `datasets` library reads it). */
function offlineFromEnv(repoType: RepoType, env: NodeJS.ProcessEnv = process.env): boolean {
  const on = (v: string | undefined) => ['1', 'true', 'yes', 'on'].includes((v ?? '').toLowerCase());
  return on(env.HF_HUB_OFFLINE) || (repoType === 'dataset' && on(env.HF_DATASETS_OFFLINE));
}

/** `name` or `org/name` in the hub's alphabet. */
export function isRepoId(value: string): boolean {
  return /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/.test(value) && !value.includes('..') && !value.endsWith('.');
}

/** `models--org--name` or `datasets--org--name`: the repo's folder in the cache. */
export function repoCacheFolder(repoId: string, repoType: RepoType = 'model'): string {
  return `${repoType}s--${repoId.replaceAll('/', '--')}`;
}

function isCommit(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}

/** The cached snapshot folder of `repoId` at `revision`, or null when it is not (fully) cached. */
export function findCachedSnapshot(
  repoId: string,
  options: Pick<SnapshotOptions, 'revision' | 'cacheDir' | 'repoType'> = {},
): string | null {
  const revision = options.revision ?? 'main';
  const repoDir = path.join(options.cacheDir ?? hfHubCacheDir(), repoCacheFolder(repoId, options.repoType));
  let commit = revision;
  if (!isCommit(revision)) {
    try {
      commit = fs.readFileSync(path.join(repoDir, 'refs', revision), 'utf8').trim();
    } catch {
      return null;
    }
  }
  const snapshot = path.join(repoDir, 'snapshots', commit);
  return commit !== '' && fs.existsSync(snapshot) && fs.statSync(snapshot).isDirectory() ? snapshot : null;
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

/**
 * The folder of a model: `nameOrPath` itself when it is a folder, else the HF cache snapshot of
 * that model id, downloading it first where it is not cached (and downloads are allowed).
 */
export async function resolveModelPath(nameOrPath: string, options: HubOptions = {}): Promise<string> {
  const local = expandHome(nameOrPath);
  if (fs.existsSync(local)) {
    if (!fs.statSync(local).isDirectory()) {
      throw new XtunerError(`model path ${nameOrPath} is a file; expected a model folder (with config.json)`);
    }
    return path.resolve(local);
  }
  const looksLikePath = /^(\.|\/|~)/.test(nameOrPath) || nameOrPath.includes('\\') || nameOrPath.endsWith('/');
  if (looksLikePath || !isRepoId(nameOrPath)) {
    throw new XtunerError(`model folder ${nameOrPath} does not exist (${path.resolve(local)})`, {
      hint: 'pass an existing model folder, or a Hugging Face model id such as internlm/internlm2-chat-1_8b',
    });
  }
  return resolveSnapshot(nameOrPath, { ...options, repoType: 'model' });
}

/** What to tell a user who has neither the repo cached nor a connection, per repo type. */
const WAY_OUT: Record<RepoType, (repoId: string, repoDir: string) => string> = {
  model: (repoId) => `pass a local model folder, or unset HF_HUB_OFFLINE; no folder ./${repoId} exists either`,
  dataset: (repoId, repoDir) =>
    `download it on a machine with internet into the Hugging Face cache and copy ${repoDir} here, ` +
    `or point data_path at a local .json, .jsonl or .parquet file (no ./${repoId} exists either)`,
};

/**
 * The cached snapshot folder of hub repo `repoId` (a model or a dataset), downloading the picked
 * files first where it is not cached and downloads are allowed.
 */
export async function resolveSnapshot(repoId: string, options: SnapshotOptions = {}): Promise<string> {
  const repoType = options.repoType ?? 'model';
  const cacheDir = options.cacheDir ?? hfHubCacheDir();
  const cached = findCachedSnapshot(repoId, { revision: options.revision, cacheDir, repoType });
  if (cached !== null) return cached;
  if (options.offline ?? offlineFromEnv(repoType)) {
    const repoDir = path.join(cacheDir, repoCacheFolder(repoId, repoType));
    throw new XtunerError(`${repoType} ${repoId} is not in the Hugging Face cache (${repoDir}) and downloads are off (HF_HUB_OFFLINE)`, {
      hint: WAY_OUT[repoType](repoId, repoDir),
    });
  }
  return downloadSnapshot(repoId, { ...options, cacheDir });
}

interface RepoInfo {
  sha: string;
  files: string[];
}

/** Downloads the picked files of a repo into the cache; returns the snapshot folder. */
export async function downloadSnapshot(repoId: string, options: SnapshotOptions = {}): Promise<string> {
  const repoType = options.repoType ?? 'model';
  const revision = options.revision ?? 'main';
  const cacheDir = options.cacheDir ?? hfHubCacheDir();
  const endpoint = (options.endpoint ?? hfEndpoint()).replace(/\/+$/, '');
  const token = options.token ?? process.env.HF_TOKEN;
  const headers: Record<string, string> = { 'user-agent': 'xtuner-ts' };
  if (token) headers.authorization = `Bearer ${token}`;
  const context = { repoId, repoType, endpoint, cacheDir };

  const info = await fetchRepoInfo(revision, headers, context);
  const files = (options.pickFiles ?? DEFAULT_PICK[repoType])(info.files);
  const repoDir = path.join(cacheDir, repoCacheFolder(repoId, repoType));
  const snapshot = path.join(repoDir, 'snapshots', info.sha);
  fs.mkdirSync(snapshot, { recursive: true });

  const report = options.onProgress ?? stderrProgress();
  const urlPrefix = repoType === 'dataset' ? `${endpoint}/datasets` : endpoint;
  for (const [i, file] of files.entries()) {
    const dest = path.join(snapshot, file);
    if (fs.existsSync(dest)) continue; // fetched by an earlier, interrupted run
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const url = `${urlPrefix}/${repoId}/resolve/${info.sha}/${file.split('/').map(encodeURIComponent).join('/')}`;
    await downloadFile(url, dest, headers, options.stallTimeoutMs ?? DEFAULT_STALL_MS, context, (bytes, total, done) =>
      report({ repoId, file, index: i + 1, count: files.length, bytes, total, done }),
    );
  }
  if (!isCommit(revision)) {
    const ref = path.join(repoDir, 'refs', revision);
    writeFileAtomic(ref, info.sha);
  }
  return snapshot;
}

interface Context {
  repoId: string;
  repoType: RepoType;
  endpoint: string;
  cacheDir: string;
}

function pickModelFiles(files: string[]): string[] {
  return files.filter((f) => WANTED_FILE.test(f) && !f.startsWith('.'));
}

const DEFAULT_PICK: Record<RepoType, (files: string[]) => string[]> = {
  model: pickModelFiles,
  dataset: (files) => files.filter((f) => !f.split('/').some((part) => part.startsWith('.'))),
};

/** A repo file path that stays inside the snapshot folder. */
function isSafeRepoPath(file: string): boolean {
  return file !== '' && !file.startsWith('/') && !file.includes('\\') && file.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

async function fetchRepoInfo(revision: string, headers: Record<string, string>, context: Context): Promise<RepoInfo> {
  const { repoId, repoType, endpoint } = context;
  const url = `${endpoint}/api/${repoType}s/${repoId}/revision/${encodeURIComponent(revision)}`;
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(API_TIMEOUT_MS) });
  } catch (err) {
    throw networkError(err, context);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw httpError(response.status, `${repoType} ${repoId} (revision ${revision})`, context);
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch (err) {
    throw new XtunerError(`${url} did not answer JSON: ${(err as Error).message}`);
  }
  const { sha, siblings } = (body ?? {}) as { sha?: unknown; siblings?: unknown };
  if (typeof sha !== 'string' || !/^[\w.-]+$/.test(sha) || !Array.isArray(siblings)) {
    throw new XtunerError(`${url} answered without a commit sha and file list; is ${endpoint} a Hugging Face hub?`);
  }
  const files = siblings
    .map((s) => (s as { rfilename?: unknown })?.rfilename)
    .filter((f): f is string => typeof f === 'string' && isSafeRepoPath(f));
  if (repoType === 'model' && !files.includes('config.json') && !files.includes('adapter_config.json')) {
    throw new XtunerError(`${repoId} on ${endpoint} has no config.json: it is not a model repository`);
  }
  return { sha, files };
}

async function downloadFile(
  url: string,
  dest: string,
  headers: Record<string, string>,
  stallMs: number,
  context: Context,
  progress: (bytes: number, total: number | null, done: boolean) => void,
): Promise<void> {
  const controller = new AbortController();
  const stall = setTimeout(() => controller.abort(new Error(`no data for ${stallMs / 1000} s`)), stallMs);
  try {
    let response: Response;
    try {
      response = await fetch(url, { headers, signal: controller.signal });
    } catch (err) {
      throw networkError(err, context);
    }
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      throw httpError(response.status, `file ${path.basename(dest)} of ${context.repoId}`, context);
    }
    const body = response.body;
    const length = response.headers.get('content-length');
    const total = length === null ? null : Number(length);
    let bytes = 0;
    await writeStreamAtomicAsync(dest, async (write) => {
      try {
        for await (const chunk of Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>)) {
          stall.refresh();
          bytes += (chunk as Buffer).length;
          write(chunk as Buffer);
          progress(bytes, total, false);
        }
      } catch (err) {
        throw brokenOff(url, bytes, total, reasonOf(err));
      }
      if (total !== null && bytes !== total) throw brokenOff(url, bytes, total, 'the server closed the connection');
    });
    progress(bytes, total, true);
  } finally {
    clearTimeout(stall);
  }
}

function reasonOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}

function brokenOff(url: string, bytes: number, total: number | null, reason: string): XtunerError {
  const of = total === null ? '' : ` of ${total}`;
  return new XtunerError(`download of ${url} broke off after ${bytes}${of} bytes: ${reason}`, {
    hint: 'run the command again: files already complete are kept',
  });
}

function networkError(err: unknown, context: Context): XtunerError {
  const reason = reasonOf(err);
  const repoDir = path.join(context.cacheDir, repoCacheFolder(context.repoId, context.repoType));
  const wayOut =
    context.repoType === 'model'
      ? `no folder ${path.resolve(context.repoId)} exists either: pass a local model folder, or put the model into the Hugging Face cache (${repoDir})`
      : WAY_OUT.dataset(context.repoId, repoDir);
  return new XtunerError(`cannot download ${context.repoType === 'dataset' ? 'dataset ' : ''}${context.repoId} from ${context.endpoint}: ${reason} (is this machine offline?)`, {
    hint: `${wayOut}; HF_ENDPOINT sets a mirror`,
    cause: err,
  });
}

function httpError(status: number, what: string, context: Context): XtunerError {
  if (status === 401 || status === 403) {
    return new XtunerError(`${context.endpoint} refused ${what} (HTTP ${status}): it is gated or private`, {
      hint: 'accept its licence on the hub, then set HF_TOKEN to an access token',
    });
  }
  if (status === 404) {
    return new XtunerError(`${context.endpoint} has no ${what} (HTTP 404)`, {
      hint: `check the id; no local ${context.repoType === 'model' ? 'folder' : 'file or folder'} ./${context.repoId} exists either`,
    });
  }
  return new XtunerError(`${context.endpoint} answered HTTP ${status} for ${what}`, { hint: 'try again later' });
}

/** Progress on stderr: a line rewritten in place on a terminal, one line per file otherwise. */
function stderrProgress(): (p: DownloadProgress) => void {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  return (p) => {
    const now = Date.now();
    if (!p.done && (!tty || now - last < 100)) return;
    last = now;
    const size = p.total === null ? `${mib(p.bytes)} MiB` : `${mib(p.bytes)}/${mib(p.total)} MiB`;
    const line = `downloading ${p.repoId} [${p.index}/${p.count}] ${p.file} ${size}`;
    process.stderr.write(tty ? `\r\x1b[K${line}${p.done ? '\n' : ''}` : `${line}\n`);
  };
}
