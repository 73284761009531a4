// The weights of a Hugging Face model folder: one `model.safetensors`, or shards listed by
// `model.safetensors.index.json` ({ metadata: { total_size }, weight_map: { name: file } }).
// Reading is lazy per tensor (see ./safetensors.ts); writing splits into shards of at most
// `maxShardBytes` (a tensor larger than that gets a shard of its own, as transformers does).
// Not here: config.json and the mapping of names to modules (src/models/).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { XtunerError } from '../errors.ts';
import { writeJsonAtomic } from './atomic.ts';
import { SafetensorsReader, tensorBytes, writeSafetensors, type HostTensor, type ReadBuffer, type TensorEntry, type WriteTensor } from './safetensors.ts';

export const SAFETENSORS_INDEX = 'model.safetensors.index.json';
export const SAFETENSORS_SINGLE = 'model.safetensors';
/** transformers' default `max_shard_size` ("5GB"). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/** All tensors of a model folder, whether sharded or not. Call close() when done. */
export class CheckpointReader {
  readonly dir: string;
  /** `__metadata__` of the first shard (e.g. { format: 'pt' }). */
  readonly metadata: Readonly<Record<string, string>>;
  private readonly where = new Map<string, SafetensorsReader>();
  private readonly readers: SafetensorsReader[];

  private constructor(dir: string, readers: SafetensorsReader[], weightMap: Map<string, string> | null) {
    this.dir = dir;
    this.readers = readers;
    this.metadata = readers[0]?.metadata ?? {};
    const byFile = new Map(readers.map((r) => [path.basename(r.path), r]));
    if (weightMap) {
      for (const [name, file] of weightMap) {
        const r = byFile.get(file)!;
        if (!r.has(name)) {
          throw new XtunerError(`${path.join(dir, SAFETENSORS_INDEX)}: '${name}' is mapped to ${file}, which has no such tensor`);
        }
        this.where.set(name, r);
      }
    } else {
      for (const r of readers) for (const n of r.names()) this.where.set(n, r);
    }
  }

  /** model.safetensors where the folder has one, else the shards of its index (transformers' order). */
  static open(dir: string): CheckpointReader {
    const single = path.join(dir, SAFETENSORS_SINGLE);
    if (fs.existsSync(single)) return new CheckpointReader(dir, [SafetensorsReader.open(single)], null);
    const indexPath = path.join(dir, SAFETENSORS_INDEX);
    if (fs.existsSync(indexPath)) {
      const weightMap = readIndex(indexPath);
      const files = [...new Set(weightMap.values())];
      const readers: SafetensorsReader[] = [];
      try {
        for (const f of files) readers.push(SafetensorsReader.open(path.join(dir, f)));
        return new CheckpointReader(dir, readers, weightMap);
      } catch (e) {
        for (const r of readers) r.close();
        throw e;
      }
    }
    if (!fs.existsSync(dir)) throw new XtunerError(`${dir}: model folder not found`);
    const bins = fs.readdirSync(dir).filter((f) => f.endsWith('.bin') || f.endsWith('.pt'));
    throw new XtunerError(`${dir}: no ${SAFETENSORS_SINGLE} or ${SAFETENSORS_INDEX}`, {
      hint: bins.length
        ? `found ${bins.join(', ')}: PyTorch pickles are not read (they can run code); re-save the model with safe_serialization=True`
        : 'expected a Hugging Face model folder with safetensors weights',
    });
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** Where the tensor is, including the file path. */
  entry(name: string): TensorEntry & { file: string } {
    const r = this.reader(name);
    return { ...r.entry(name), file: r.path };
  }

  /** See SafetensorsReader.read. */
  read(name: string, into?: ReadBuffer): HostTensor {
    return this.reader(name).read(name, into);
  }

  close(): void {
    for (const r of this.readers) r.close();
  }

  private reader(name: string): SafetensorsReader {
    const r = this.where.get(name);
    if (!r) throw new XtunerError(`${this.dir}: checkpoint has no tensor named '${name}'`);
    return r;
  }
}

function readIndex(indexPath: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new XtunerError(`${indexPath}: not valid JSON (${(e as Error).message})`);
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
    throw new XtunerError(`${indexPath}: expected an object with a "weight_map" of tensor name -> shard file`);
  }
  const map = new Map<string, string>();
  for (const [name, file] of Object.entries(wm)) {
    // Shards must be plain file names in the same folder: no paths that escape it.
    if (typeof file !== 'string' || file !== path.basename(file) || file === '..') {
      throw new XtunerError(`${indexPath}: weight_map['${name}'] = ${JSON.stringify(file)} is not a file name in this folder`);
    }
    map.set(name, file);
  }
  return map;
}

export interface WriteCheckpointOptions {
  /** Largest shard in bytes of tensor data; default 5 GB as in transformers. */
  maxShardBytes?: number;
  /** `__metadata__` of every shard; default { format: 'pt' } (what transformers writes and expects). */
  metadata?: Record<string, string>;
}

/**
 * Writes tensors as `model.safetensors`, or, when they exceed `maxShardBytes`, as
 * `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`. Each file is written
 * atomically; weight files of an earlier save that the new one does not use are removed.
 * Returns the file names written.
 */
export function writeCheckpoint(dir: string, tensors: Iterable<readonly [string, WriteTensor]>, opts: WriteCheckpointOptions = {}): string[] {
  const maxShard = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShard > 0)) throw new XtunerError(`maxShardBytes must be positive, got ${maxShard}`);
  const metadata = opts.metadata ?? { format: 'pt' };
  fs.mkdirSync(dir, { recursive: true });

  const shards: Array<Array<readonly [string, WriteTensor]>> = [[]];
  let current = 0;
  let total = 0;
  for (const item of tensors) {
    const bytes = tensorBytes(item[1]);
    if (current > 0 && current + bytes > maxShard) {
      shards.push([]);
      current = 0;
    }
    shards[shards.length - 1]!.push(item);
    current += bytes;
    total += bytes;
  }

  const written: string[] = [];
  if (shards.length === 1) {
    writeSafetensors(path.join(dir, SAFETENSORS_SINGLE), shards[0]!, metadata);
    written.push(SAFETENSORS_SINGLE);
  } else {
    const n = shards.length;
    const pad = (i: number) => String(i).padStart(5, '0');
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const file = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
      writeSafetensors(path.join(dir, file), shard, metadata);
      for (const [name] of shard) weightMap[name] = file;
      written.push(file);
    });
    const index = { metadata: { total_size: total }, weight_map: weightMap };
    writeJsonAtomic(path.join(dir, SAFETENSORS_INDEX), index);
    written.push(SAFETENSORS_INDEX);
  }
  for (const f of fs.readdirSync(dir)) {
    const ours = f === SAFETENSORS_SINGLE || f === SAFETENSORS_INDEX || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f);
    if (ours && !written.includes(f)) fs.rmSync(path.join(dir, f));
  }
  return written;
}
