// What `xtuner check-custom-dataset` and `xtuner log-dataset` compute and print, as functions of a
// config's data part and a tokenizer (the commands in src/cli/commands/ only load those).

import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { buildTrainData, encodeDataset, type DataConfig, type DatasetStats } from './dataset.ts';
import type { EncodedSample } from './encode.ts';
import { formatProblem, type DataProblem } from './sources.ts';

export interface CheckReport {
  problems: DataProblem[];
  stats: DatasetStats;
  /** Packed rows, when pack_to_max_length (and the dataset is not empty). */
  packed: { rows: number; paddingTokens: number } | null;
}

/** Reads and encodes the whole dataset, listing every problem instead of stopping at the first. */
export async function checkDataset(cfg: DataConfig, tokenizer: Tokenizer): Promise<CheckReport> {
  const encoded = await encodeDataset(cfg, tokenizer, { collectProblems: true });
  let packed: CheckReport['packed'] = null;
  if (cfg.pack_to_max_length && encoded.samples.length > 0) {
    const data = buildTrainData(encoded, cfg);
    packed = { rows: data.stats.rows, paddingTokens: data.stats.paddingTokens };
  }
  return { problems: encoded.problems, stats: encoded.stats, packed };
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export function formatCheckReport(cfg: DataConfig, report: CheckReport): string {
  const { stats, problems } = report;
  const lines = [
    `Checked ${plural(stats.files.length, 'file')}, ${plural(stats.records, 'record')} ` +
      `(dataset_format ${cfg.dataset_format}, prompt_template ${cfg.prompt_template ?? 'none'}, max_length ${cfg.max_length})`,
  ];
  if (problems.length === 0) lines.push('No problems found.');
  else {
    lines.push(`${plural(problems.length, 'problem')}:`);
    for (const p of problems) lines.push(`  ${formatProblem(p)}`);
  }
  lines.push(`Samples kept: ${stats.samples}`);
  if (stats.droppedEmpty > 0) lines.push(`Dropped, no conversation (alpaca '<nooutput>', empty conversation): ${stats.droppedEmpty}`);
  if (stats.droppedNoLabel > 0) lines.push(`Dropped, no supervised token: ${stats.droppedNoLabel}`);
  lines.push(
    `Truncated to max_length ${cfg.max_length}: ${plural(stats.truncated, 'sample')}` +
      (stats.truncated > 0 ? ` (${stats.truncatedTokens} tokens cut; longest sample ${stats.longest} tokens)` : ''),
  );
  lines.push(`Tokens: ${stats.tokens} (${stats.supervisedTokens} supervised)`);
  if (report.packed) {
    lines.push(`Packed: ${plural(report.packed.rows, 'row')} of ${cfg.max_length} tokens (${report.packed.paddingTokens} padding)`);
  }
  return lines.join('\n') + '\n';
}

export const LOG_SHOW = ['text', 'masked_text', 'input_ids', 'labels', 'all'] as const;
export type LogShow = (typeof LOG_SHOW)[number];

const pyList = (a: ArrayLike<number>): string => `[${Array.from(a).join(', ')}]`;

/** XTuner's log_dataset output for one training item (a packed row, or a sample). */
export function formatLogItem(item: EncodedSample, tokenizer: Tokenizer, show: LogShow): string {
  const out: string[] = [];
  const header = (title: string): void => void out.push(`${'#'.repeat(20)}   ${title}   ${'#'.repeat(20)}`);
  const all = show === 'all';
  if (all || show === 'text') {
    header('text');
    out.push(tokenizer.decode(item.inputIds));
  }
  if (all || show === 'masked_text') {
    header('text(masked)');
    const masked = Array.from(item.labels).filter((l) => l < 0);
    const kept = Array.from(item.labels).filter((l) => l >= 0);
    out.push(masked.map(() => '[-100]').join(' ') + ' ' + tokenizer.decode(kept));
  }
  if (all || show === 'input_ids') {
    header('input_ids');
    out.push(pyList(item.inputIds));
  }
  if (all || show === 'labels') {
    header('labels');
    out.push(pyList(item.labels));
  }
  return out.join('\n') + '\n';
}
