// Training checkpoints: `iter_<N>/` folders in the work folder, enough to resume exactly.
//   trainable.safetensors   the trainable weights by HF module name (LoRA A/B, or every weight)
//   optimizer.safetensors   the optimizer's tensors (e.g. `exp_avg.<name>`, `exp_avg_sq.<name>`)
//   grads.safetensors       only when saved in the middle of a gradient accumulation: the
//                           gradients accumulated so far, by parameter name
//   state.json              iteration, data position, optimizer scalars, scheduler, RNG state, and
//                           the size and SHA-256 of each file above (written last)
// A folder is written under a temporary name and renamed into place, `last_checkpoint` is updated
// after that, and old folders are pruned to `save_total_limit` only after both: a failure at any
// point (a full disk) leaves the previous checkpoint and `last_checkpoint` as they were.
// What the JSON state means belongs to the trainer; this file only stores and verifies it.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { XtunerError } from '../errors.ts';
import { SafetensorsReader, writeSafetensors, type HostTensor, type WriteTensor } from '../io/safetensors.ts';
import { writeDirAtomic, writeFileAtomic } from '../io/atomic.ts';
import { listCheckpoints, readLastCheckpoint, writeLastCheckpoint } from './work-dir.ts';

export const CHECKPOINT_FORMAT = 'xtuner-ts-checkpoint';
/** 2: `iter` counts batches (XTuner's iterations), no longer optimizer steps; grads.safetensors. */
export const CHECKPOINT_VERSION = 2;
const TENSOR_FILES = { trainable: 'trainable.safetensors', optimizer: 'optimizer.safetensors', grads: 'grads.safetensors' } as const;
const STATE_FILE = 'state.json';

type Tensors = Iterable<readonly [string, WriteTensor]>;

export interface CheckpointData {
  iter: number;
  trainable: Tensors;
  optimizer: Tensors;
  /** Gradients accumulated towards the next optimizer step; null when there are none. */
  grads: Tensors | null;
  /** JSON-serialisable trainer state (data position, optimizer scalars, RNG, ...). */
  state: Record<string, unknown>;
}

export interface LoadedCheckpoint {
  dir: string;
  iter: number;
  trainable: Map<string, HostTensor>;
  optimizer: Map<string, HostTensor>;
  /** Null when saved between optimizer steps (or not read). */
  grads: Map<string, HostTensor> | null;
  state: Record<string, unknown>;
}

interface FileRecord {
  bytes: number;
  sha256: string;
}

interface StateFile {
  format: string;
  version: number;
  iter: number;
  files: Record<string, FileRecord>;
  state: Record<string, unknown>;
}

export function checkpointName(iter: number): string {
  return `iter_${iter}`;
}

/**
 * Writes `iter_<N>/` atomically, points `last_checkpoint` at it, then keeps only the newest
 * `keep` checkpoints (keep <= 0: keep all). Returns the folder. A failed write throws an
 * XtunerError naming the checkpoint that is still intact.
 */
export async function saveCheckpoint(workDir: string, data: CheckpointData, keep: number): Promise<string> {
  const dir = path.join(workDir, checkpointName(data.iter));
  try {
    await writeDirAtomic(dir, (tmp) => {
      const files: Record<string, FileRecord> = {};
      for (const [file, tensors] of [
        [TENSOR_FILES.trainable, data.trainable],
        [TENSOR_FILES.optimizer, data.optimizer],
        [TENSOR_FILES.grads, data.grads],
      ] as const) {
        if (tensors === null) continue;
        const p = path.join(tmp, file);
        writeSafetensors(p, tensors, { format: 'pt' });
        files[file] = fileRecord(p);
      }
      const state: StateFile = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, iter: data.iter, files, state: data.state };
      writeFileAtomic(path.join(tmp, STATE_FILE), `${JSON.stringify(state, null, 1)}\n`);
    });
  } catch (err) {
    const previous = readLastCheckpoint(workDir);
    // The system error under the writer's "cannot write <file>" says what went wrong.
    const root = err instanceof XtunerError && err.cause instanceof Error ? err.cause : (err as Error);
    const code = (root as NodeJS.ErrnoException).code;
    throw new XtunerError(
      `could not save checkpoint ${dir}: ${code ? `${code}: ` : ''}${root.message}`,
      {
        hint: previous
          ? `the previous checkpoint ${previous} is intact; resume from it with --resume ${previous}`
          : 'no earlier checkpoint exists in this work folder',
        cause: err,
      },
    );
  }
  writeLastCheckpoint(workDir, dir);
  if (keep > 0) pruneCheckpoints(workDir, keep, dir);
  return dir;
}

/** Deletes all but the newest `keep` `iter_<N>` folders; never the one named `protect`. */
export function pruneCheckpoints(workDir: string, keep: number, protect: string): void {
  const all = listCheckpoints(workDir);
  const doomed = all.slice(0, Math.max(0, all.length - keep)).filter((d) => path.resolve(d) !== path.resolve(protect));
  for (const d of doomed) fs.rmSync(d, { recursive: true, force: true });
}

/**
 * Reads and verifies a checkpoint folder (sizes and SHA-256 of its files). Any problem is one
 * XtunerError naming the folder and what is wrong with it. `optimizer: false` skips the optimizer
 * tensors and accumulated gradients (convert needs only the weights).
 */
export function loadCheckpoint(dir: string, opts: { optimizer?: boolean } = {}): LoadedCheckpoint {
  const corrupt = (what: string): never => {
    throw new XtunerError(`checkpoint ${dir} is not usable: ${what}`, {
      hint: 'pass another iter_<N> folder to --resume, or train from the start without --resume',
    });
  };
  if (!fs.existsSync(dir)) throw new XtunerError(`checkpoint ${dir} does not exist`);
  if (!fs.statSync(dir).isDirectory()) corrupt('it is a file; a checkpoint is an iter_<N> folder');
  const statePath = path.join(dir, STATE_FILE);
  if (!fs.existsSync(statePath)) corrupt(`${STATE_FILE} is missing (an interrupted save, or not an xtuner-ts checkpoint)`);
  let parsed: StateFile;
  try {
    parsed = JSON.parse(fs.readFileSync(statePath, 'utf8')) as StateFile;
  } catch (err) {
    return corrupt(`${STATE_FILE} is not valid JSON (${(err as Error).message})`);
  }
  if (parsed?.format !== CHECKPOINT_FORMAT) corrupt(`${STATE_FILE} has format ${JSON.stringify(parsed?.format)}, expected "${CHECKPOINT_FORMAT}"`);
  if (parsed.version !== CHECKPOINT_VERSION) corrupt(`version ${parsed.version} is not supported (this xtuner-ts reads ${CHECKPOINT_VERSION})`);
  if (!Number.isInteger(parsed.iter) || parsed.iter < 0) corrupt(`iteration ${JSON.stringify(parsed.iter)} is not a count`);
  const tensors = (file: string): Map<string, HostTensor> => {
    const p = path.join(dir, file);
    const want = parsed.files?.[file];
    if (!want) return corrupt(`${STATE_FILE} does not list ${file}`);
    if (!fs.existsSync(p)) return corrupt(`${file} is missing`);
    const got = fileRecord(p);
    if (got.bytes !== want.bytes) return corrupt(`${file} has ${got.bytes} bytes, expected ${want.bytes} (truncated or replaced)`);
    if (got.sha256 !== want.sha256) return corrupt(`${file} does not match its SHA-256 (the file was damaged)`);
    const reader = SafetensorsReader.open(p);
    try {
      return new Map(reader.names().map((n) => [n, reader.read(n)]));
    } finally {
      reader.close();
    }
  };
  const trainable = tensors(TENSOR_FILES.trainable);
  const resume = opts.optimizer !== false;
  const optimizer = resume ? tensors(TENSOR_FILES.optimizer) : new Map<string, HostTensor>();
  const grads = resume && parsed.files?.[TENSOR_FILES.grads] ? tensors(TENSOR_FILES.grads) : null;
  return { dir, iter: parsed.iter, trainable, optimizer, grads, state: parsed.state ?? {} };
}

function fileRecord(p: string): FileRecord {
  const hash = createHash('sha256');
  const fd = fs.openSync(p, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    let bytes = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, bytes);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      bytes += n;
    }
    return { bytes, sha256: hash.digest('hex') };
  } finally {
    fs.closeSync(fd);
  }
}
