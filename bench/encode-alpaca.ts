// Benchmark: encoding 100k Alpaca-style samples (generated here, English and Chinese, typical
// lengths) through the whole per-sample path: alpaca map function -> internlm2_chat template ->
// token ids and labels -> cut to max_length; then packing. Real tokenizers from test/fixtures.
//
//   node --import tsx bench/encode-alpaca.ts [N] [qwen3|mistral] [WORKERS]
//
// Prints samples/s in this thread, then with WORKERS worker threads (default: one per core).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packSamples } from '../src/data/pack.ts';
import { seededRandom } from '../src/data/rng.ts';
import { encodeInProcess, encodeInWorkers, type EncodedItem } from '../src/data/parallel-encode.ts';
import { SampleEncoder, type SampleEncoderOptions } from '../src/data/sample-encoder.ts';
import type { SourceItem } from '../src/data/sources.ts';
import type { EncodedSample } from '../src/data/encode.ts';
import { loadTokenizer } from '../src/tokenizer/index.ts';

const N = Number(process.argv[2] ?? 100_000);
const which = process.argv[3] ?? 'qwen3';
const workers = Number(process.argv[4] ?? os.availableParallelism());

const EN = ('the a of to and in is it you that he was for on are with as I his they be at one have this from or had by ' +
  'word but what some we can out other were all there when up use your how said an each she which do their time if will ' +
  'way about many then them write would like so these her long make thing see him two has look more day could go come did ' +
  'number sound no most people my over know water than call first who may down side been now find model data train loss').split(' ');
const ZH = '我们的模型数据训练学习一个大语言微调工具箱请给介绍上海景点如何使用方法问题回答中文可以进行生成能力自然处理'.split('');

function generate(n: number): { instruction: string; input: string; output: string }[] {
  const rand = seededRandom(2024);
  const words = (count: number, zh: boolean): string => {
    const out: string[] = [];
    for (let i = 0; i < count; i++) out.push(zh ? ZH[Math.floor(rand() * ZH.length)]! : EN[Math.floor(rand() * EN.length)]!);
    return zh ? out.join('') + '。' : out.join(' ') + '.';
  };
  return Array.from({ length: n }, () => {
    const zh = rand() < 0.3;
    return {
      instruction: words(8 + Math.floor(rand() * 20), zh),
      input: rand() < 0.5 ? '' : words(5 + Math.floor(rand() * 40), zh),
      output: words(20 + Math.floor(rand() * 180), zh),
    };
  });
}

const fixtures = path.resolve('test/fixtures/tokenizers');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xtuner-bench-tok-'));
process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
fs.symlinkSync(path.join(fixtures, `${which}_tokenizer.json`), path.join(dir, 'tokenizer.json'));
fs.symlinkSync(path.join(fixtures, `${which}_tokenizer_config.json`), path.join(dir, 'tokenizer_config.json'));
const tokenizer = await loadTokenizer(dir);

const records = generate(N);
const options: SampleEncoderOptions = { format: 'alpaca', promptTemplate: 'internlm2_chat', maxLength: 2048 };
const encoder = new SampleEncoder(tokenizer, options);
encoder.encodeRecord(records[0]); // warm-up: JIT, caches

async function* source(): AsyncGenerator<SourceItem> {
  for (let i = 0; i < records.length; i++) yield { kind: 'record', record: records[i], at: { file: 'generated', record: i } };
}

/** Wall seconds, and CPU seconds of the whole process (all threads): the second does not depend on
 * what else the machine runs, the first does. */
async function measure(items: AsyncIterable<EncodedItem>): Promise<{ secs: number; cpuSecs: number; samples: EncodedSample[]; tokens: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const samples: EncodedSample[] = [];
  let tokens = 0;
  for await (const item of items) {
    if (item.kind === 'encoded' && item.outcome.kind === 'sample') {
      samples.push(item.outcome.sample);
      tokens += item.outcome.sample.inputIds.length;
    }
  }
  const c = process.cpuUsage(c0);
  return { secs: (performance.now() - t0) / 1000, cpuSecs: (c.user + c.system) / 1e6, samples, tokens };
}

console.log(
  `tokenizer ${which} (${tokenizer.backend}), ${os.availableParallelism()} x ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load ${os.loadavg()[0]!.toFixed(1)}`,
);
const one = await measure(encodeInProcess(source(), encoder));
console.log(
  `encode, 1 thread:   ${N} samples, ${one.tokens} tokens in ${one.secs.toFixed(2)} s: ${Math.round(N / one.secs)} samples/s, ` +
    `${Math.round(one.tokens / one.secs)} tokens/s (${Math.round(N / one.cpuSecs)} samples per CPU second)`,
);
if (workers > 0) {
  // worker start-up (tokenizer load) included
  const many = await measure(encodeInWorkers(source(), { tokenizerDir: dir, options }, workers));
  console.log(
    `encode, ${workers} workers: ${N} samples in ${many.secs.toFixed(2)} s: ${Math.round(N / many.secs)} samples/s ` +
      `(${Math.round(N / many.cpuSecs)} samples per CPU second)`,
  );
}
const t1 = performance.now();
const { rows } = packSamples(one.samples, 2048);
console.log(`pack:   ${rows.length} rows of 2048 in ${((performance.now() - t1) / 1000).toFixed(2)} s`);
