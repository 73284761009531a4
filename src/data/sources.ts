// Reading dataset files: `.json` (an array of records, or JSON Lines as Hugging Face `datasets`
// also accepts), `.jsonl` (streamed line by line, never read whole) and folders of them. Yields
// records with where they came from; problems (bad JSON, empty files) are yielded, not thrown, so
// that check-custom-dataset can list them all. Knows nothing of formats: see formats.ts.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { XtunerError } from '../errors.ts';

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

const DATA_EXTENSIONS = ['.json', '.jsonl'];

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
  if (paths.length === 0) throw new XtunerError('data_path is empty: give a .json or .jsonl file, or a folder of them');
  for (const p of paths) {
    if (!fs.existsSync(p)) throw new XtunerError(`data_path: ${p} does not exist`);
    if (fs.statSync(p).isDirectory()) {
      const before = files.length;
      walk(p);
      if (files.length === before) throw new XtunerError(`data_path: folder ${p} holds no .json or .jsonl file`);
    } else if (DATA_EXTENSIONS.includes(path.extname(p).toLowerCase())) files.push(p);
    else throw new XtunerError(`data_path: ${p} is not a .json or .jsonl file`);
  }
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

/** Every record of every file, in order. */
export async function* readRecords(files: readonly string[]): AsyncGenerator<SourceItem> {
  for (const file of files) {
    const stat = fs.statSync(file);
    if (stat.isFile() && stat.size === 0) {
      yield { kind: 'problem', problem: { file, message: 'empty file (no records)' } };
      continue;
    }
    const isArray = path.extname(file).toLowerCase() === '.json' && (await startsWithBracket(file));
    yield* isArray ? readJsonArray(file) : readJsonLines(file);
  }
}
