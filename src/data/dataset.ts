// The data part of a config turned into training items: read every record of data_path (local
// files, or a Hugging Face dataset id: see sources.ts), encode it
// (format -> template -> ids and labels -> cut to max_length), drop what XTuner drops, count all
// of it, then pack (shuffled by the seed) or keep samples for padded batches.

import fs from 'node:fs';
import { XtunerError } from '../errors.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import type { EncodedSample } from './encode.ts';
import { DATASET_FORMATS, isDatasetFormat, type DatasetFormat } from './formats.ts';
import { BatchLoader } from './loader.ts';
import { packSamples, type PackedRow } from './pack.ts';
import { defaultEncodeWorkers, encodeInProcess, encodeInWorkers } from './parallel-encode.ts';
import { permutation } from './rng.ts';
import { SampleEncoder } from './sample-encoder.ts';
import type { HubOptions } from '../io/hf-hub.ts';
import { formatProblem, readRecords, resolveDataFiles, type DataProblem } from './sources.ts';

/** The config keys the data pipeline reads (XTuner's names; Contract 3 fills the defaults). */
export interface DataConfig {
  data_path: string | readonly string[];
  dataset_format: string;
  /** A PROMPT_TEMPLATE name, 'hf' or null. */
  prompt_template: string | null;
  max_length: number;
  pack_to_max_length: boolean;
  shuffle_before_pack: boolean;
  seed: number;
  batch_size: number;
}

export interface DatasetStats {
  files: string[];
  /** Records read (malformed JSON lines not included). */
  records: number;
  samples: number;
  /** Records whose map function gave no turn (alpaca '<nooutput>', empty conversation). */
  droppedEmpty: number;
  /** Samples with no supervised token (after the cut to max_length). */
  droppedNoLabel: number;
  /** Samples longer than max_length, cut to it (still used). */
  truncated: number;
  /** Tokens cut off by truncation. */
  truncatedTokens: number;
  tokens: number;
  supervisedTokens: number;
  /** Longest sample before truncation. */
  longest: number;
}

export interface EncodedDataset {
  samples: EncodedSample[];
  stats: DatasetStats;
  problems: DataProblem[];
}

export function dataFormatOf(cfg: Pick<DataConfig, 'dataset_format'>): DatasetFormat {
  if (!isDatasetFormat(cfg.dataset_format)) {
    throw new XtunerError(`unknown dataset_format '${cfg.dataset_format}'`, { hint: `known formats: ${DATASET_FORMATS.join(', ')}` });
  }
  return cfg.dataset_format;
}

/** Data files larger than this in total are encoded in worker threads (when workers are not given). */
const PARALLEL_BYTES = 4 << 20;

export interface EncodeDatasetOptions {
  /** List bad records and go on (check-custom-dataset), instead of throwing at the first. */
  collectProblems?: boolean;
  /** Worker threads for tokenizing (0: in this thread). Default: several for large datasets. */
  workers?: number;
  /** Where a data_path that is a Hugging Face dataset id is looked up and fetched; default: the HF_* variables. */
  hub?: HubOptions;
}

/**
 * Encodes every record. With `collectProblems`, bad records are listed and skipped (for
 * check-custom-dataset); otherwise the first one throws an XtunerError naming file, line and field.
 */
export async function encodeDataset(
  cfg: Pick<DataConfig, 'data_path' | 'dataset_format' | 'prompt_template' | 'max_length'>,
  tokenizer: Tokenizer,
  options: EncodeDatasetOptions = {},
): Promise<EncodedDataset> {
  const encoderOptions = {
    format: dataFormatOf(cfg),
    promptTemplate: cfg.prompt_template,
    maxLength: cfg.max_length,
    withImageToken: cfg.dataset_format === 'llava',
  };
  const encoder = new SampleEncoder(tokenizer, encoderOptions); // also checks the template name
  const files = await resolveDataFiles(cfg.data_path, options.hub);
  const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
  const workers = options.workers ?? (bytes > PARALLEL_BYTES ? defaultEncodeWorkers() : 0);
  const items =
    workers > 0
      ? encodeInWorkers(readRecords(files), { tokenizerDir: tokenizer.dir, options: encoderOptions }, workers)
      : encodeInProcess(readRecords(files), encoder);

  const stats: DatasetStats = {
    files,
    records: 0,
    samples: 0,
    droppedEmpty: 0,
    droppedNoLabel: 0,
    truncated: 0,
    truncatedTokens: 0,
    tokens: 0,
    supervisedTokens: 0,
    longest: 0,
  };
  const samples: EncodedSample[] = [];
  const problems: DataProblem[] = [];
  const report = (p: DataProblem): void => {
    if (!options.collectProblems) throw new XtunerError(formatProblem(p));
    problems.push(p);
  };

  for await (const item of items) {
    if (item.kind === 'problem') {
      report(item.problem);
      continue;
    }
    stats.records++;
    const { outcome, at } = item;
    if (outcome.kind === 'error') {
      report({ ...at, ...(outcome.field === undefined ? {} : { field: outcome.field }), message: outcome.message });
    } else if (outcome.kind === 'empty') stats.droppedEmpty++;
    else if (outcome.kind === 'no-label') {
      stats.droppedNoLabel++;
      stats.longest = Math.max(stats.longest, outcome.fullLength);
    } else {
      const { sample } = outcome;
      samples.push(sample);
      stats.samples++;
      stats.longest = Math.max(stats.longest, outcome.fullLength);
      stats.tokens += sample.inputIds.length;
      for (const l of sample.labels) if (l >= 0) stats.supervisedTokens++;
      if (outcome.truncated) {
        stats.truncated++;
        stats.truncatedTokens += outcome.fullLength - sample.inputIds.length;
      }
    }
  }
  return { samples, stats, problems };
}

export interface TrainData {
  /** Packed rows, or samples (padded per batch) when pack_to_max_length is false. */
  items: PackedRow[] | EncodedSample[];
  loader: BatchLoader;
  stats: DatasetStats & { rows: number; paddingTokens: number };
}

/** Packs (or not) an encoded dataset and makes its resumable batch loader. */
export function buildTrainData(
  encoded: Pick<EncodedDataset, 'samples' | 'stats'>,
  cfg: Pick<DataConfig, 'max_length' | 'pack_to_max_length' | 'shuffle_before_pack' | 'seed' | 'batch_size'>,
): TrainData {
  if (encoded.samples.length === 0) {
    throw new XtunerError('the dataset has no usable sample', {
      hint: 'run `xtuner check-custom-dataset CONFIG` to see what was dropped and why',
    });
  }
  let items: PackedRow[] | EncodedSample[] = encoded.samples;
  let paddingTokens = 0;
  if (cfg.pack_to_max_length) {
    let ordered = encoded.samples;
    if (cfg.shuffle_before_pack) {
      // stream 0xffff: a different order than any epoch's (streams 0, 1, ...)
      const order = permutation(ordered.length, cfg.seed, 0xffff);
      ordered = Array.from(order, (i) => encoded.samples[i]!);
    }
    const packed = packSamples(ordered, cfg.max_length);
    items = packed.rows;
    paddingTokens = packed.paddingTokens;
  }
  const loader = new BatchLoader(items, { batchSize: cfg.batch_size, seed: cfg.seed });
  return { items, loader, stats: { ...encoded.stats, rows: items.length, paddingTokens } };
}

/** encodeDataset + buildTrainData: what the trainer calls. */
export async function loadTrainData(cfg: DataConfig, tokenizer: Tokenizer): Promise<TrainData> {
  return buildTrainData(await encodeDataset(cfg, tokenizer), cfg);
}
