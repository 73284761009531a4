// Encoding records, in process or spread over worker threads (tokenization is the cost of building
// a dataset, and it parallelises perfectly). Either way the outcomes come out in record order,
// interleaved with the source's problems where they occurred, so results never depend on the
// number of workers.

import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { XtunerError } from '../errors.ts';
import { RecordError } from './formats.ts';
import type { EncodeOutcome, SampleEncoder, SampleEncoderOptions } from './sample-encoder.ts';
import type { DataProblem, Location, SourceItem } from './sources.ts';

export interface WorkerInit {
  tokenizerDir: string;
  options: SampleEncoderOptions;
}

export type WorkerOutcome = EncodeOutcome | { kind: 'error'; field: string | undefined; message: string };

export interface ChunkResult {
  id: number;
  outcomes: WorkerOutcome[];
  /** An XtunerError raised while encoding the chunk. */
  fatal?: { message: string; hint: string | undefined };
}

export type EncodedItem = { kind: 'encoded'; at: Location; outcome: WorkerOutcome } | { kind: 'problem'; problem: DataProblem };

/** Records per message to a worker: large enough to amortise messaging, small enough to balance. */
const CHUNK = 256;

function encodeOne(encoder: SampleEncoder, record: unknown): WorkerOutcome {
  try {
    return encoder.encodeRecord(record);
  } catch (e) {
    if (!(e instanceof RecordError)) throw e;
    return { kind: 'error', field: e.field, message: e.message };
  }
}

export async function* encodeInProcess(source: AsyncIterable<SourceItem>, encoder: SampleEncoder): AsyncGenerator<EncodedItem> {
  for await (const item of source) {
    if (item.kind === 'problem') yield item;
    else yield { kind: 'encoded', at: item.at, outcome: encodeOne(encoder, item.record) };
  }
}

/** A sensible worker count for this machine: all cores but one, at most 8. */
export function defaultEncodeWorkers(): number {
  return Math.max(0, Math.min(8, os.availableParallelism() - 1));
}

/**
 * The worker file sits beside this one: .js when built. Run from source (.ts, under tsx), a worker
 * does not inherit the main thread's TypeScript loader, so it registers tsx itself first.
 */
function startWorker(init: WorkerInit): Worker {
  const ext = path.extname(fileURLToPath(import.meta.url));
  const file = new URL(`./encode-worker${ext}`, import.meta.url);
  if (ext !== '.ts') return new Worker(file, { workerData: init });
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(file.href)}); });`;
  return new Worker(boot, { eval: true, workerData: init });
}

class EncodeWorker {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  private readonly waiting: { resolve: (r: ChunkResult) => void; reject: (e: unknown) => void }[] = [];
  private failure: unknown = null;

  constructor(init: WorkerInit) {
    this.worker = startWorker(init);
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('message', () => resolve());
      this.worker.once('error', reject);
    });
    this.worker.on('message', (msg: ChunkResult | { ready: true }) => {
      if (!('id' in msg)) return;
      const w = this.waiting.shift()!;
      if (msg.fatal) w.reject(new XtunerError(msg.fatal.message, { hint: msg.fatal.hint }));
      else w.resolve(msg);
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`an encoding worker exited (code ${code})`)));
  }

  get inFlight(): number {
    return this.waiting.length;
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const w of this.waiting.splice(0)) w.reject(this.failure);
  }

  encode(id: number, records: unknown[]): Promise<ChunkResult> {
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.worker.postMessage({ id, records });
    });
  }
}

type ChunkEntry = { kind: 'record'; at: Location } | { kind: 'problem'; problem: DataProblem };

export async function* encodeInWorkers(source: AsyncIterable<SourceItem>, init: WorkerInit, workers: number): AsyncGenerator<EncodedItem> {
  const pool = Array.from({ length: workers }, () => new EncodeWorker(init));
  const pending: { entries: ChunkEntry[]; result: Promise<ChunkResult> | null }[] = [];
  let entries: ChunkEntry[] = [];
  let records: unknown[] = [];
  let nextId = 0;

  const dispatch = (): void => {
    if (entries.length === 0) return;
    const worker = pool.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    const result = records.length > 0 ? worker.encode(nextId++, records) : null;
    result?.catch(() => {}); // awaited in order below; do not report it unhandled meanwhile
    pending.push({ entries, result });
    entries = [];
    records = [];
  };

  async function* drainHead(): AsyncGenerator<EncodedItem> {
    const head = pending.shift()!;
    const outcomes = head.result === null ? [] : (await head.result).outcomes;
    let k = 0;
    for (const e of head.entries) {
      if (e.kind === 'problem') yield e;
      else yield { kind: 'encoded', at: e.at, outcome: outcomes[k++]! };
    }
  }

  try {
    await Promise.all(pool.map((w) => w.ready));
    for await (const item of source) {
      if (item.kind === 'problem') entries.push(item);
      else {
        entries.push({ kind: 'record', at: item.at });
        records.push(item.record);
      }
      if (records.length >= CHUNK) {
        dispatch();
        if (pending.length >= 2 * workers) yield* drainHead();
      }
    }
    dispatch();
    while (pending.length > 0) yield* drainHead();
  } finally {
    await Promise.all(pool.map((w) => w.worker.terminate()));
  }
}
