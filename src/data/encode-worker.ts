// Worker thread of parallel-encode.ts: loads the tokenizer once, then encodes chunks of records
// with a SampleEncoder and sends the outcomes back (sample buffers transferred, not copied).

import { parentPort, workerData } from 'node:worker_threads';
import { XtunerError } from '../errors.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { RecordError } from './formats.ts';
import type { ChunkResult, WorkerInit, WorkerOutcome } from './parallel-encode.ts';
import { SampleEncoder } from './sample-encoder.ts';

const init = workerData as WorkerInit;
const encoder = new SampleEncoder(await loadTokenizer(init.tokenizerDir), init.options);
const port = parentPort!;

port.on('message', (msg: { id: number; records: unknown[] }) => {
  const transfer: ArrayBuffer[] = [];
  let result: ChunkResult;
  try {
    const outcomes = msg.records.map((record): WorkerOutcome => {
      try {
        const outcome = encoder.encodeRecord(record);
        if (outcome.kind === 'sample') transfer.push(outcome.sample.inputIds.buffer as ArrayBuffer, outcome.sample.labels.buffer as ArrayBuffer);
        return outcome;
      } catch (e) {
        if (!(e instanceof RecordError)) throw e;
        return { kind: 'error', field: e.field, message: e.message };
      }
    });
    result = { id: msg.id, outcomes };
  } catch (e) {
    // a user-facing error (no EOS for the template, ...) crosses the thread boundary as data
    if (!(e instanceof XtunerError)) throw e;
    result = { id: msg.id, outcomes: [], fatal: { message: e.message, hint: e.hint } };
    transfer.length = 0;
  }
  port.postMessage(result, transfer);
});
port.postMessage({ ready: true });
