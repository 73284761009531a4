// The eval-chat hook, as XTuner's EvaluateChatHook: the model answers each of the config's
// `evaluation_inputs` (rendered with the prompt template and SYSTEM, first turn, round 1) before
// training (at most 50 new tokens), every `evaluation_freq` iterations and after the last one
// (600). Unlike XTuner, decoding is greedy, so the answers are comparable across evaluations.
// Answers go to the terminal and to `eval_chat/iter_<N>.json` in the work folder.

import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.ts';
import type { PromptTemplate } from '../tokenizer/templates.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { ChatSession, type ChatModel } from '../generate/chat-session.ts';
import { EVAL_CHAT_DIR } from './work-dir.ts';

/** EvaluateChatHook's max_new_tokens before training, and otherwise. */
export const EVAL_TOKENS_BEFORE_TRAIN = 50;
export const EVAL_TOKENS = 600;

export interface EvalChatOptions {
  tokenizer: Tokenizer;
  template: PromptTemplate | 'hf' | null;
  system: string;
  inputs: readonly string[];
}

export interface EvalSample {
  input: string;
  prompt: string;
  output: string;
}

/** Answers every evaluation input (greedy, each as a fresh conversation). */
export function evaluateChat(model: ChatModel, opts: EvalChatOptions, maxNewTokens: number): EvalSample[] {
  return opts.inputs.map((input) => {
    const session = new ChatSession(model, {
      tokenizer: opts.tokenizer,
      template: opts.template,
      system: opts.system,
      generation: { maxNewTokens, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 },
    });
    const prompt = opts.tokenizer.decode(session.promptIds(input));
    return { input, prompt, output: session.ask(input).text };
  });
}

/** Writes `eval_chat/iter_<N>.json` and returns the text to print. */
export function saveEvalChat(workDir: string, iter: number, samples: readonly EvalSample[]): string {
  const dir = path.join(workDir, EVAL_CHAT_DIR);
  writeJsonAtomic(path.join(dir, `iter_${iter}.json`), { iter, samples });
  return samples.map((s) => `Sample output (iter ${iter}):\n${s.prompt}${s.output}\n`).join('\n');
}
