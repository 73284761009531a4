// `xtuner chat MODEL`: talk to a model (optionally with a PEFT adapter), as XTuner's chat.py:
// the same flags and defaults (temperature 0.1, top-k 40, top-p 0.75, 2048 new tokens, seed 0),
// input ended by an empty line, EXIT to quit, RESET to forget the conversation, answers streamed.
// `--prompt TEXT` answers once and prints only the answer (for scripts).

import readline from 'node:readline';
import { XtunerError } from '../../errors.ts';
import { parseCommandArgs, UsageError, type Command } from '../command.ts';

export const command: Command = {
  name: 'chat',
  summary: 'Chat with a model (and an adapter) in the terminal, or answer one --prompt',
  usage: [
    'xtuner chat MODEL [--adapter DIR] [--prompt-template NAME] [--system TEXT | --system-template NAME]',
    '                  [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--max-new-tokens N]',
    '                  [--stop-words W ...] [--seed N] [--no-streamer] [--bot-name NAME] [--torch-dtype D] [--bits 4] [--device D]',
    '                  [--prompt TEXT]',
    '',
    'Arguments:',
    '  MODEL                   a Hugging Face model folder or model id',
    'Options:',
    '  --adapter DIR           a PEFT adapter folder to apply (e.g. from `xtuner convert pth_to_hf`)',
    '  --prompt-template NAME  XTuner prompt template (internlm2_chat, qwen_chat, llama3_chat, ...) or hf',
    '                          (the tokenizer\'s chat_template); default none: the text goes in as it is',
    '  --system TEXT           system prompt; --system-template NAME uses an XTuner SYSTEM_TEMPLATE',
    '  --temperature T         0 is greedy (default 0.1)',
    '  --top-k K               default 40;  --top-p P  default 0.75',
    '  --repetition-penalty R  default 1.0 (none)',
    '  --max-new-tokens N      default 2048',
    '  --stop-words W ...      extra stop words (the template\'s STOP_WORDS always apply)',
    '  --seed N                seed of the sampling (default 0)',
    '  --no-streamer           print each answer when complete',
    '  --torch-dtype D         fp32, bf16, fp16 or auto (default auto: fp32 on CPU, bf16 on CUDA)',
    '  --bits 4                the base model\'s linear layers in NF4 (QLoRA\'s 4 bits, double quant), quantised',
    '                          as they load: a 7B model in about 4 GiB; the adapter stays in full precision',
    '  --device D              cpu, cuda or auto (default auto: CUDA where it works)',
    '  --prompt TEXT           answer TEXT once, print only the answer, and exit',
    '',
    'Interactive: end your input with an empty line; EXIT quits, RESET clears the history.',
  ].join('\n'),
  async run(argv) {
    const { words: stopWords, rest } = takeMany(argv, '--stop-words');
    const { values, positionals } = parseCommandArgs(
      command,
      rest,
      {
        adapter: { type: 'string' },
        'prompt-template': { type: 'string' },
        system: { type: 'string' },
        'system-template': { type: 'string' },
        temperature: { type: 'string', default: '0.1' },
        'top-k': { type: 'string', default: '40' },
        'top-p': { type: 'string', default: '0.75' },
        'repetition-penalty': { type: 'string', default: '1.0' },
        'max-new-tokens': { type: 'string', default: '2048' },
        seed: { type: 'string', default: '0' },
        'no-streamer': { type: 'boolean' },
        'bot-name': { type: 'string', default: 'BOT' },
        'torch-dtype': { type: 'string', default: 'auto' },
        bits: { type: 'string' },
        device: { type: 'string', default: 'auto' },
        prompt: { type: 'string' },
      },
      { names: ['MODEL'] },
    );
    const num = (flag: string, text: string, ok: (x: number) => boolean, want: string): number => {
      const x = Number(text);
      if (text.trim() === '' || !Number.isFinite(x) || !ok(x)) throw new UsageError(command.name, `--${flag} must be ${want}, got '${text}'`);
      return x;
    };
    const generation = {
      temperature: num('temperature', values.temperature!, (x) => x >= 0, 'a number >= 0'),
      topK: num('top-k', values['top-k']!, (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0'),
      topP: num('top-p', values['top-p']!, (x) => x > 0 && x <= 1, 'in (0, 1]'),
      repetitionPenalty: num('repetition-penalty', values['repetition-penalty']!, (x) => x > 0, 'a number > 0'),
      maxNewTokens: num('max-new-tokens', values['max-new-tokens']!, (x) => Number.isInteger(x) && x > 0, 'a positive integer'),
      seed: num('seed', values.seed!, (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    };
    const dtypes = { auto: null, fp32: 'float32', bf16: 'bfloat16', fp16: 'float16' } as const;
    if (!Object.hasOwn(dtypes, values['torch-dtype']!)) {
      throw new UsageError(command.name, `--torch-dtype must be one of ${Object.keys(dtypes).join(', ')}, got '${values['torch-dtype']}'`);
    }
    if (values.bits === '8') throw new UsageError(command.name, '--bits 8 (LLM.int8) is not supported; --bits 4 loads the model in NF4');
    if (values.bits !== undefined && values.bits !== '4') throw new UsageError(command.name, `--bits must be 4, got '${values.bits}'`);
    if (!['cpu', 'cuda', 'auto'].includes(values.device!)) throw new UsageError(command.name, `--device must be cpu, cuda or auto, got '${values.device}'`);
    if (values.system !== undefined && values['system-template'] !== undefined) {
      throw new UsageError(command.name, '--system and --system-template cannot be used together');
    }

    const { resolveModelPath } = await import('../../io/hf-hub.ts');
    const { loadModel } = await import('../../models/index.ts');
    const { loadAdapter } = await import('../../peft/adapter.ts');
    const { loraLayers } = await import('../../peft/lora.ts');
    const { getPromptTemplate, loadTokenizer, SYSTEM_TEMPLATE, formatTemplate } = await import('../../tokenizer/index.ts');
    const { ChatSession } = await import('../../generate/chat-session.ts');
    const { resolveDevice, embeddingBytes } = await import('../../train/setup.ts');

    let system = values.system;
    if (values['system-template'] !== undefined) {
      const name = values['system-template'];
      if (!Object.hasOwn(SYSTEM_TEMPLATE, name)) {
        throw new UsageError(command.name, `unknown --system-template '${name}'; known: ${Object.keys(SYSTEM_TEMPLATE).join(', ')}`);
      }
      system = formatTemplate(SYSTEM_TEMPLATE[name as keyof typeof SYSTEM_TEMPLATE], { round: 1, bot_name: values['bot-name'] });
    }
    const template = values['prompt-template'] === undefined ? null : getPromptTemplate(values['prompt-template']);
    const log = (line: string) => process.stderr.write(`${line}\n`);

    const modelDir = await resolveModelPath(positionals[0]!);
    const device = resolveDevice(values.device as 'cpu' | 'cuda' | 'auto');
    const dtype = dtypes[values['torch-dtype'] as keyof typeof dtypes] ?? (device === 'cuda' ? 'bfloat16' : 'float32');
    try {
      // --bits 4: as QLoRA trains (bitsandbytes' nf4 with double quant, computing in `dtype`, the
      // embedding table in host memory)
      const model = await loadModel(modelDir, { dtype, device, ...(values.bits ? { quantization: { doubleQuant: true } } : {}) });
      const tokenizer = await loadTokenizer(modelDir);
      log(`Load LLM from ${positionals[0]}`);
      if (values.bits) {
        const { nf4Report } = await import('../../quant/nf4-linear.ts');
        const q = nf4Report(model, dtype);
        const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
        const host = model.embeddingOnHost ? `; the embedding table (${mib(embeddingBytes(model))}) stays in host memory` : '';
        log(`${q.modules.length} linear layers in NF4: ${mib(q.bytesAfter)} (${mib(q.bytesBefore)} in ${dtype})${host}`);
      }
      if (values.adapter !== undefined) {
        loadAdapter(model, values.adapter);
        log(`Load adapter from ${values.adapter}`);
        // nothing trains here: keep the adapters' compute-dtype copies rather than cast them per token
        for (const [, layer] of loraLayers(model)) layer.keepCasts = true;
      }
      model.eval();
      // the KV cache stays from turn to turn: a turn runs its new tokens only
      const session = new ChatSession(model, { tokenizer, template, system, stopWords, generation, keepCache: true });
      const { noGrad } = await import('../../tensor/index.ts');

      if (values.prompt !== undefined) {
        const { text } = noGrad(() => session.ask(values.prompt!));
        session.dispose();
        process.stdout.write(`${text}\n`);
        return;
      }
      const stream = !values['no-streamer'];
      const input = lineReader();
      try {
        for (;;) {
          const text = await input.read();
          if (text === null || text.trim() === 'EXIT') {
            process.stdout.write('Log: Exit!\n');
            return;
          }
          if (text.trim() === 'RESET') {
            session.reset();
            process.stdout.write('Log: History responses have been removed!\n');
            continue;
          }
          const turn = noGrad(() => session.ask(text, stream ? (piece) => process.stdout.write(piece) : undefined));
          process.stdout.write(stream ? '\n' : `${turn.text}\n`);
          if (session.historyLength >= generation.maxNewTokens) {
            session.reset();
            process.stdout.write(`Remove the memory of history responses, since it exceeds the length limitation ${generation.maxNewTokens}.\n`);
          }
        }
      } finally {
        input.close();
        session.dispose();
      }
    } catch (e) {
      throw device === 'cuda' ? await withChatHint(e, values.bits !== undefined) : e;
    }
  },
};

/** A flag that takes every following word up to the next `--flag` (argparse nargs='+'). */
function takeMany(argv: readonly string[], flag: string): { words: string[]; rest: string[] } {
  const words: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === flag) {
      const before = words.length;
      while (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) words.push(argv[++i]!);
      if (words.length === before) throw new UsageError('chat', `${flag} needs at least one word`); // argparse's nargs='+'
    } else if (a.startsWith(`${flag}=`)) words.push(a.slice(flag.length + 1));
    else rest.push(a);
  }
  return { words, rest };
}

/** XTuner's get_input: lines until an empty one; null at end of input. */
function lineReader(): { read(): Promise<string | null>; close(): void } {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  const lines: string[] = [];
  const waiting: Array<(line: string | null) => void> = [];
  let ended = false;
  rl.on('line', (l) => (waiting.length ? waiting.shift()!(l) : lines.push(l)));
  rl.on('close', () => {
    ended = true;
    while (waiting.length) waiting.shift()!(null);
  });
  const next = (): Promise<string | null> =>
    lines.length ? Promise.resolve(lines.shift()!) : ended ? Promise.resolve(null) : new Promise((r) => waiting.push(r));
  return {
    async read() {
      process.stdout.write('\ndouble enter to end input (EXIT: exit chat, RESET: reset history) >>> ');
      const got: string[] = [];
      for (;;) {
        const l = await next();
        if (l === null) return got.length ? got.join('\n') : null;
        if (l === '') return got.join('\n');
        got.push(l);
      }
    },
    close: () => rl.close(),
  };
}

/** Out of GPU memory while chatting: what to change here (the allocator's own hint speaks of training). */
async function withChatHint(e: unknown, inNf4: boolean): Promise<unknown> {
  const { CudaOutOfMemoryError } = await import('../../backends/cuda/index.ts');
  if (!(e instanceof CudaOutOfMemoryError)) return e;
  const ways = [
    ...(inNf4 ? [] : ['--bits 4 loads the linear layers in NF4 (about a quarter of their bf16 bytes)']),
    'a lower --max-new-tokens keeps a shorter history (RESET clears it)',
    '--device cpu',
    'close other processes on the GPU (nvidia-smi)',
  ];
  return new XtunerError(e.message, { hint: ways.join('; '), cause: e });
}
