// Reading dataset files: `.json` (an array of records, or JSON Lines as Hugging Face `datasets`
// also accepts), `.jsonl` (streamed line by line, never read whole), `.parquet` (one row group at
// a time, each row an object keyed by column) and folders of them; or a Hugging Face dataset id
// (`org/name`, when no such local path exists), resolved in the HF cache or downloaded through
// src/io/hf-hub.ts, whose train split files are read. Yields records with where they came from;
// problems (bad JSON, unreadable Parquet, empty files) are yielded, not thrown, so that
// check-custom-dataset can list them all. Knows nothing of formats: see formats.ts.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, toJson } from 'hyparquet';
import { XtunerError } from '../errors.ts';
import { isRepoId, resolveSnapshot, type HubOptions } from '../io/hf-hub.ts';

/** Where a record or a problem is: a JSONL line (1-based) or an index into a JSON array. */
export interface Location {
  file: string;
  line?: number;
  record?: number;
}

export interface DataProblem extends Location {
  /** The record's field at fault ('messages[2].role'), where there is one. */
  field?: string;
  message: string;
}

export type SourceItem =
  | { kind: 'record'; record: unknown; at: Location }
  | { kind: 'problem'; problem: DataProblem };

export function formatLocation(at: Location): string {
  if (at.line !== undefined) return `${at.file}:${at.line}`;
  if (at.record !== undefined) return `${at.file} record [${at.record}]`;
  return at.file;
}

export function formatProblem(p: DataProblem): string {
  return `${formatLocation(p)}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

const DATA_EXTENSIONS = ['.json', '.jsonl', '.parquet'];
const KINDS = '.json, .jsonl or .parquet';

/** The data files named by `data_path`: files as given, folders searched recursively (sorted). */
export function listDataFiles(dataPath: string | readonly string[]): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (DATA_EXTENSIONS.includes(path.extname(entry.name).toLowerCase())) files.push(p);
    }
  };
  const paths = typeof dataPath === 'string' ? [dataPath] : dataPath;
  if (paths.length === 0) throw new XtunerError(`data_path is empty: give a ${KINDS} file, a folder of them, or a dataset id`);
  for (const p of paths) {
    if (!fs.existsSync(p)) {
      throw new XtunerError(`data_path: ${p} does not exist`, {
        hint: 'give a local data file or folder, or a Hugging Face dataset id such as tatsu-lab/alpaca',
      });
    }
    if (fs.statSync(p).isDirectory()) {
      const before = files.length;
      walk(p);
      if (files.length === before) throw new XtunerError(`data_path: folder ${p} holds no ${KINDS} file`);
    } else if (DATA_EXTENSIONS.includes(path.extname(p).toLowerCase())) files.push(p);
    else throw new XtunerError(`data_path: ${p} is not a ${KINDS} file`);
  }
  return files;
}

/**
 * Whether a data_path entry is taken for a Hugging Face dataset id: no such local path, `org/name`
 * in the hub's alphabet, and not named like a data file or a relative path.
 */
export function isDatasetId(p: string): boolean {
  return (
    !fs.existsSync(p) &&
    p.includes('/') &&
    isRepoId(p) &&
    !DATA_EXTENSIONS.includes(path.extname(p).toLowerCase())
  );
}

/** Files a dataset repo may hold that describe it rather than hold records. */
const METADATA_FILES = new Set(['dataset_infos.json', 'dataset_info.json', 'dataset_dict.json', 'state.json']);
const TRAIN_NAME = /^train(ing)?([-._ 0-9]|$)/i;
const TRAIN_DIR = /^train(ing)?$/i;

/**
 * The train split of a dataset repo without a loading script, as `datasets` picks it in the
 * simple cases: among the data files (.json, .jsonl, .parquet; not hidden, not metadata), those
 * whose name starts with `train` (`data/train-00000-of-00001.parquet`, `train.jsonl`) or that
 * sit in a `train/` folder; where there is none, all data files. Paths are relative to the repo
 * root, with '/'; the result is sorted.
 */
export function trainSplitFiles(files: readonly string[]): string[] {
  const data = files
    .filter((f) => {
      const parts = f.split('/');
      const base = parts[parts.length - 1]!;
      return (
        DATA_EXTENSIONS.includes(path.extname(base).toLowerCase()) &&
        !parts.some((part) => part.startsWith('.')) &&
        !METADATA_FILES.has(base)
      );
    })
    .sort();
  const train = data.filter((f) => {
    const parts = f.split('/');
    return TRAIN_NAME.test(parts[parts.length - 1]!) || parts.slice(0, -1).some((d) => TRAIN_DIR.test(d));
  });
  return train.length > 0 ? train : data;
}

/** Every file under `dir` (symlinks followed, as huggingface_hub's cache uses them), relative, with '/'. */
function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    const stat = fs.statSync(p, { throwIfNoEntry: false });
    if (stat?.isDirectory()) out.push(...filesUnder(p, rel));
    else if (stat?.isFile()) out.push(rel);
  }
  return out;
}

function noDataFiles(datasetId: string, where: string, files: readonly string[]): XtunerError {
  const shown = files.length === 0 ? 'no files' : files.slice(0, 8).join(', ') + (files.length > 8 ? ', ...' : '');
  return new XtunerError(`dataset ${datasetId} (${where}) holds no ${KINDS} data file (it has ${shown})`, {
    hint: 'datasets built by a Python loading script are not supported: point data_path at local data files',
  });
}

/** The train split files of a Hugging Face dataset, from the HF cache or downloaded into it. */
async function datasetFiles(datasetId: string, hub: HubOptions): Promise<string[]> {
  const snapshot = await resolveSnapshot(datasetId, {
    ...hub,
    repoType: 'dataset',
    pickFiles: (files) => {
      const picked = trainSplitFiles(files);
      if (picked.length === 0) throw noDataFiles(datasetId, 'on the hub', files);
      return picked;
    },
  });
  const cached = filesUnder(snapshot);
  const picked = trainSplitFiles(cached);
  if (picked.length === 0) throw noDataFiles(datasetId, snapshot, cached);
  return picked.map((f) => path.join(snapshot, ...f.split('/')));
}

/**
 * The data files named by `data_path`, where each entry is a local file or folder (listDataFiles)
 * or a Hugging Face dataset id (isDatasetId): its train split files in the HF cache, downloaded
 * first when not cached and downloads are allowed (`hub`: cache, endpoint, token, offline).
 */
export async function resolveDataFiles(dataPath: string | readonly string[], hub: HubOptions = {}): Promise<string[]> {
  const paths = typeof dataPath === 'string' ? [dataPath] : dataPath;
  if (paths.length === 0) return listDataFiles(paths); // its error
  const files: string[] = [];
  for (const p of paths) files.push(...(isDatasetId(p) ? await datasetFiles(p, hub) : listDataFiles(p)));
  return files;
}

function jsonError(e: unknown): string {
  return `malformed JSON (${(e as Error).message})`;
}

async function* readJsonLines(file: string): AsyncGenerator<SourceItem> {
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let lineNo = 0;
  let records = 0;
  for await (const text of lines) {
    lineNo++;
    if (text.trim() === '') continue;
    records++;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (e) {
      yield { kind: 'problem', problem: { file, line: lineNo, message: jsonError(e) } };
      continue;
    }
    yield { kind: 'record', record, at: { file, line: lineNo } };
  }
  if (records === 0) yield { kind: 'problem', problem: { file, message: 'empty file (no records)' } };
}

/** Whether the file's first non-blank character is '[' (a JSON array) or not (JSON Lines). */
async function startsWithBracket(file: string): Promise<boolean> {
  for await (const chunk of fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 4096 })) {
    const t = (chunk as string).trimStart();
    if (t !== '') return t.startsWith('[');
  }
  return false;
}

async function* readJsonArray(file: string): AsyncGenerator<SourceItem> {
  let data: unknown;
  try {
    data = JSON.parse(await fs.promises.readFile(file, 'utf8'));
  } catch (e) {
    yield { kind: 'problem', problem: { file, message: jsonError(e) } };
    return;
  }
  if (!Array.isArray(data)) {
    yield { kind: 'problem', problem: { file, message: 'expected a JSON array of records at the top level' } };
    return;
  }
  if (data.length === 0) yield { kind: 'problem', problem: { file, message: 'empty file (no records)' } };
  for (let i = 0; i < data.length; i++) yield { kind: 'record', record: data[i], at: { file, record: i } };
}

/** Rows of a Parquet file, one row group in memory at a time; values made JSON-like (bigint -> number). */
async function* readParquet(file: string): AsyncGenerator<SourceItem> {
  let source: Awaited<ReturnType<typeof asyncBufferFromFile>>;
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    source = await asyncBufferFromFile(file);
    metadata = await parquetMetadataAsync(source);
  } catch (e) {
    yield { kind: 'problem', problem: { file, message: `not a readable Parquet file (${(e as Error).message})` } };
    return;
  }
  if (Number(metadata.num_rows) === 0) {
    yield { kind: 'problem', problem: { file, message: 'empty file (no records)' } };
    return;
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: source, metadata, rowStart, rowEnd });
    } catch (e) {
      const message = `unreadable Parquet rows ${rowStart}..${rowEnd - 1} (${(e as Error).message})`;
      yield { kind: 'problem', problem: { file, record: rowStart, message } };
      rowStart = rowEnd;
      continue;
    }
    for (let i = 0; i < rows.length; i++) yield { kind: 'record', record: toJson(rows[i]), at: { file, record: rowStart + i } };
    rowStart = rowEnd;
  }
}

/** Every record of every file, in order. */
export async function* readRecords(files: readonly string[]): AsyncGenerator<SourceItem> {
  for (const file of files) {
    const stat = fs.statSync(file);
    if (stat.isFile() && stat.size === 0) {
      yield { kind: 'problem', problem: { file, message: 'empty file (no records)' } };
      continue;
    }
    const ext = path.extname(file).toLowerCase();
    if (ext === '.parquet') {
      yield* readParquet(file);
      continue;
    }
    const isArray = ext === '.json' && (await startsWithBracket(file));
    yield* isArray ? readJsonArray(file) : readJsonLines(file);
  }
}
