// The training loop of `xtuner train`, counted as XTuner (mmengine) counts: one iteration is one
// batch of the dataloader (forward, loss / accumulation factor, backward). The optimizer steps
// every `accumulative_counts` iterations and after the last one (./accumulation.ts), clipping to
// `max_norm` first; the learning rate follows warm-up + cosine per iteration. `max_iters`,
// `save_steps`, `evaluation_freq` and `log_interval` all count iterations. The run has
// max_epochs x batches per epoch iterations, the schedule warms up over warmup_ratio of them
// (XTuner's param_scheduler with convert_to_iter_based); with `max_iters` instead, the run and
// the schedule span max_iters iterations.
// Resuming restores weights, AdamW moments, schedule, data position, the LoRA dropout generator
// and, for a checkpoint saved between two optimizer steps, the gradients accumulated so far, so
// the losses after a resume are those of an uninterrupted run.
// Ctrl-C finishes the current iteration, saves, and returns; a NaN/inf loss stops the run. The
// host reads one thing back per iteration, at its end: the loss, with the grad norm when it stepped.

import fs from 'node:fs';
import path from 'node:path';
import { cudaBackend } from '../backends/cuda/index.ts';
import { saveResolvedConfig, type XtunerConfig } from '../config/index.ts';
import type { DataPosition } from '../data/index.ts';
import { XtunerError } from '../errors.ts';
import { hostToFloat32, type HostTensor, type WriteTensor } from '../io/safetensors.ts';
import { AdamW, type AdamWScalars } from '../optim/adamw.ts';
import { WarmupCosineSchedule, xtunerScheduleIters, type WarmupCosineState } from '../optim/schedule.ts';
import { memoryStats, noGrad, zeros, type DropoutStreamState, type Tensor } from '../tensor/index.ts';
import { Accumulation } from './accumulation.ts';
import { loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from './checkpoint.ts';
import { EVAL_TOKENS, EVAL_TOKENS_BEFORE_TRAIN, evaluateChat, saveEvalChat } from './eval-chat.ts';
import { InterruptFlag, yieldToEvents } from './interrupt.ts';
import { TrainLogger, type Output } from './logger.ts';
import { resolveDevice, setupRun, type RunSetup } from './setup.ts';
import { TrainStep } from './step.ts';
import { acquireWorkDirLock, EVAL_CHAT_DIR, prepareFreshWorkDir, readLastCheckpoint, RESOLVED_CONFIG_FILE } from './work-dir.ts';

export interface TrainOptions {
  /** Resolved config (overrides such as --seed/--device already applied). */
  config: XtunerConfig;
  workDir: string;
  /** A checkpoint folder, or 'auto' for the work folder's `last_checkpoint`. */
  resume?: string | null;
  /** Terminal output; default stdout. */
  out?: Output;
  /** Default: one that listens to SIGINT while training. */
  interrupt?: InterruptFlag;
  /** Called after every iteration with its loss (tests use it to interrupt at an exact one). */
  onIteration?: (info: { iter: number; loss: number }) => void;
}

export interface TrainResult {
  status: 'completed' | 'interrupted';
  /** Iterations done. */
  iter: number;
  maxIters: number;
  /** The last checkpoint saved (null if none was). */
  checkpoint: string | null;
}

/** What state.json of a checkpoint holds for the trainer. */
interface TrainerState {
  iter: number;
  maxIters: number;
  accumulativeCounts: number;
  dataPosition: DataPosition;
  dataRows: number;
  method: string;
  seed: number;
  optimizer: AdamWScalars;
  scheduler: WarmupCosineState;
  /** The LoRA dropout stream (its generator, this step's seed and call count). */
  loraDropout: DropoutStreamState | null;
  /** The log line's sums since the last line, so a resumed run writes the line an uninterrupted one would (absent in older checkpoints). */
  logWindow?: LogWindowSums;
  /** The LoRA settings as trained (convert needs them without the config). */
  lora: { r: number; loraAlpha: number; loraDropout: number; targetModules: string[] | string } | null;
  modelDir: string;
}

/** What a log line averages over: the iterations since the last line. */
interface LogWindowSums {
  losses: number;
  iters: number;
  gradNorms: number;
  steps: number;
  tokens: number;
}

/** A new window, or the one a checkpoint kept: its tokens (and tokens/s) count this process's iterations only. */
const emptyWindow = (sums?: LogWindowSums): LogWindowSums & { t0: number } => ({ losses: 0, iters: 0, gradNorms: 0, steps: 0, ...sums, tokens: 0, t0: Date.now() });

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const cfg = opts.config;
  const logger = new TrainLogger(opts.workDir, opts.out);
  const release = acquireWorkDirLock(opts.workDir);
  const interrupt = opts.interrupt ?? new InterruptFlag(() => logger.info('Ctrl-C: finishing this iteration, then saving a checkpoint (Ctrl-C again quits without saving)')).install();
  try {
    const resumeDir = opts.resume ? resolveResume(opts.workDir, opts.resume) : null;
    // Read the checkpoint before the long setup, so a bad one fails at once.
    const checkpoint = resumeDir ? loadCheckpoint(resumeDir) : null;
    if (!checkpoint) prepareFreshWorkDir(opts.workDir);
    const device = resolveDevice(cfg.device);
    const run = await setupRun(cfg, cfg.seed, device, (l) => logger.info(l));
    saveResolvedConfig(cfg, path.join(opts.workDir, RESOLVED_CONFIG_FILE));
    if (checkpoint) logger.rewindTo(checkpoint.iter);
    return await loop(run, cfg, opts, logger, interrupt, checkpoint);
  } finally {
    if (!opts.interrupt) interrupt.uninstall();
    logger.close();
    release();
  }
}

function resolveResume(workDir: string, resume: string): string {
  if (resume !== 'auto') return path.resolve(resume);
  const last = readLastCheckpoint(workDir);
  if (last === null) {
    throw new XtunerError(`--resume: no checkpoint to resume in ${workDir} (no last_checkpoint file)`, {
      hint: 'pass the checkpoint folder (--resume work_dirs/<name>/iter_<N>), or train without --resume',
    });
  }
  return last;
}

/** Iterations of the run and of its learning-rate schedule. */
function runLength(cfg: XtunerConfig, batchesPerEpoch: number): { maxIters: number; warmupIters: number; totalIters: number } {
  if (cfg.max_iters !== undefined) return { maxIters: cfg.max_iters, ...xtunerScheduleIters(cfg.warmup_ratio, 1, cfg.max_iters) };
  if (batchesPerEpoch === 0) throw new XtunerError('the training data gives no batch: nothing to train on');
  const iters = xtunerScheduleIters(cfg.warmup_ratio, cfg.max_epochs, batchesPerEpoch);
  return { maxIters: iters.totalIters, ...iters };
}

async function loop(
  run: RunSetup,
  cfg: XtunerConfig,
  opts: TrainOptions,
  logger: TrainLogger,
  interrupt: InterruptFlag,
  checkpoint: LoadedCheckpoint | null,
): Promise<TrainResult> {
  const { model, trainable, data } = run;
  const batchesPerEpoch = data.loader.stepsPerEpoch;
  const { maxIters, warmupIters, totalIters } = runLength(cfg, batchesPerEpoch);
  const schedule = new WarmupCosineSchedule({ lr: cfg.lr, totalIters, warmupIters, etaMin: cfg.eta_min });
  const accumulation = new Accumulation(cfg.accumulative_counts, maxIters);
  const optimizer = new AdamW(trainable, { lr: cfg.lr, betas: cfg.betas, weightDecay: cfg.weight_decay });
  let iter = 0;
  let position: DataPosition = { epoch: 0, step: 0 };
  let lastCheckpoint: string | null = null;
  let window = emptyWindow();

  if (checkpoint) {
    const state = checkpoint.state as unknown as TrainerState;
    window = emptyWindow(state.logWindow);
    restore(run, cfg, state, checkpoint, optimizer, schedule, accumulation, data.items.length);
    iter = state.iter;
    position = state.dataPosition;
    lastCheckpoint = checkpoint.dir;
    logger.info(`resumed from ${checkpoint.dir} at iteration ${iter} (epoch ${position.epoch + 1}, batch ${position.step})`);
  }
  const acc = cfg.accumulative_counts;
  logger.info(
    `training ${maxIters} iterations (${cfg.max_iters === undefined ? `${cfg.max_epochs} epochs x ${batchesPerEpoch} batches` : 'max_iters'}) ` +
      `of ${cfg.batch_size} ${cfg.pack_to_max_length ? 'row' : 'sample'}${cfg.batch_size === 1 ? '' : 's'}; ` +
      (acc === 1 ? 'an optimizer step every iteration' : `an optimizer step every ${acc} iterations`) +
      `; work folder ${opts.workDir}`,
  );

  if (warmupIters === 1) {
    // mmengine's chained LinearLR + CosineAnnealingLR: the cosine starts from where a 1-iteration warm-up left it
    logger.info(
      `warning: warmup_ratio ${cfg.warmup_ratio} gives a warm-up of 1 iteration, which leaves the learning rate at ` +
        `1e-5 x lr for the whole run (as in XTuner); a warmup_ratio of at least ${(2 / totalIters).toPrecision(2)}, or 0, avoids it`,
    );
  }
  const evalOpts = { tokenizer: run.tokenizer, template: run.template, system: cfg.SYSTEM, inputs: cfg.evaluation_inputs };
  const evaluate = (maxNewTokens: number): void => {
    if (cfg.evaluation_inputs.length === 0) return;
    model.eval();
    const samples = noGrad(() => evaluateChat(model, evalOpts, maxNewTokens));
    model.train();
    logger.info(saveEvalChat(opts.workDir, iter, samples));
  };
  let savedIter = iter;
  const save = async (): Promise<void> => {
    savedIter = iter;
    const { t0: _, ...logWindow } = window;
    const contents = checkpointData(run, cfg, optimizer, schedule, accumulation, iter, position, logWindow);
    lastCheckpoint = await saveCheckpoint(opts.workDir, contents, cfg.save_total_limit);
    logger.info(`saved checkpoint ${lastCheckpoint}`);
  };

  // A resumed run has usually answered at this iteration already; keep that file.
  if (!fs.existsSync(path.join(opts.workDir, EVAL_CHAT_DIR, `iter_${iter}.json`))) evaluate(EVAL_TOKENS_BEFORE_TRAIN);
  model.train();
  const started = Date.now();
  const startIter = iter;
  window.t0 = Date.now(); // tokens/s counts this process's time only
  let status: TrainResult['status'] = 'completed';

  const step = new TrainStep({ model, optimizer, maxNorm: cfg.max_norm, dropout: run.loraDropout, notice: (l) => logger.info(l) });
  if (step.graphs) logger.info('CUDA graphs: each kind of iteration runs op by op once, then is captured and replayed (XTUNER_CUDA_GRAPHS=0: off)');
  try {
    while (iter < maxIters) {
      if (interrupt.requested) {
        status = 'interrupted';
        if (iter > savedIter) await save();
        break;
      }
      const batch = data.loader.batchAt(position);
      const lr = schedule.lr;
      // forward, backward and the optimizer step only queue work (on CUDA, one graph launch once the
      // step's kind has been captured); the loss stays on the device until the one read-back
      const { loss, gradNorm } = step.run(
        {
          inputIds: { data: batch.inputIds, shape: batch.shape },
          labels: { data: batch.labels, shape: batch.shape },
          positionIds: { data: batch.positionIds, shape: batch.shape },
          cuSeqlens: batch.cuSeqlens,
        },
        { lossFactor: accumulation.lossFactor(iter), optimizerStep: accumulation.stepsAfter(iter), lr },
      );
      if (!Number.isFinite(loss) || (gradNorm !== undefined && !Number.isFinite(gradNorm))) {
        // a step taken with this loss or these gradients spoilt the weights in memory only: nothing is saved after this
        const what = Number.isFinite(loss) ? `the gradient norm is ${gradNorm}` : `loss is ${loss}`;
        throw new XtunerError(
          `${what} at iteration ${iter + 1} (epoch ${position.epoch + 1}, batch ${position.step + 1} of ${batchesPerEpoch}); training stopped`,
          {
            hint:
              `lower lr (now ${cfg.lr}) or check the data; ` +
              (lastCheckpoint ? `the last good checkpoint is ${lastCheckpoint} (--resume ${lastCheckpoint})` : 'no checkpoint was saved yet'),
          },
        );
      }
      const epoch = position.epoch;
      position = data.loader.next(position);
      if (gradNorm !== undefined) {
        window.gradNorms += gradNorm;
        window.steps++;
      }
      schedule.step();
      iter++;
      window.losses += loss;
      window.iters++;
      for (const v of batch.attentionMask) window.tokens += v;
      opts.onIteration?.({ iter, loss });

      const elapsed = (Date.now() - started) / 1000;
      const secPerIter = elapsed / (iter - startIter);
      const etaSec = secPerIter * (maxIters - iter);
      if (iter % cfg.log_interval === 0 || iter === maxIters) {
        const windowSec = Math.max(1e-9, (Date.now() - window.t0) / 1000);
        // XTuner logs max_memory_allocated: on CUDA the allocator's blocks, on the CPU the tensors' bytes
        const peakBytes = model.device === 'cuda' ? cudaBackend().memoryStats().peakAllocatedBytes : memoryStats().peakBytes;
        logger.step({
          iter,
          maxIters,
          epoch: epoch + 1,
          loss: window.losses / window.iters,
          lr,
          gradNorm: window.steps > 0 ? window.gradNorms / window.steps : null,
          tokens: window.tokens,
          tokensPerSec: window.tokens / windowSec,
          secPerIter,
          etaSec,
          memoryMB: peakBytes / 2 ** 20,
          rssMB: process.memoryUsage().rss / 2 ** 20,
        });
        window = emptyWindow();
      } else {
        logger.progress(iter, maxIters, loss, etaSec);
      }
      if (iter % cfg.evaluation_freq === 0 && iter < maxIters) evaluate(EVAL_TOKENS);
      if (iter % cfg.save_steps === 0 || iter === maxIters) await save();
      await yieldToEvents();
    }
  } finally {
    step.dispose();
  }

  if (status === 'interrupted') {
    logger.info(
      `interrupted at iteration ${iter} of ${maxIters}; ` +
        (lastCheckpoint ? `resume with --resume ${lastCheckpoint}` : 'no checkpoint was saved'),
    );
  } else {
    evaluate(EVAL_TOKENS);
    logger.info(`done: ${maxIters} iterations; last checkpoint ${lastCheckpoint}`);
  }
  return { status, iter, maxIters, checkpoint: lastCheckpoint };
}

/** The tensors and state a checkpoint holds (tensor data read only when written). */
function checkpointData(
  run: RunSetup,
  cfg: XtunerConfig,
  optimizer: AdamW,
  schedule: WarmupCosineSchedule,
  accumulation: Accumulation,
  iter: number,
  position: DataPosition,
  logWindow: LogWindowSums,
) {
  const state: TrainerState = {
    iter,
    logWindow,
    maxIters: accumulation.maxIters,
    accumulativeCounts: accumulation.counts,
    dataPosition: position,
    dataRows: run.data.items.length,
    method: run.method,
    seed: cfg.seed,
    optimizer: optimizer.scalars(),
    scheduler: schedule.stateDict(),
    loraDropout: run.loraDropout?.getState() ?? null,
    lora: cfg.lora && run.lora ? { r: cfg.lora.r, loraAlpha: cfg.lora.lora_alpha, loraDropout: cfg.lora.lora_dropout, targetModules: run.lora.targetModules } : null,
    modelDir: run.modelDir,
  };
  const grads = accumulation.pendingAfter(iter)
    ? run.trainable.filter(([, p]) => p.grad !== null).map(([n, p]) => [n, writeTensor(p.grad!)] as const)
    : null;
  return {
    iter,
    trainable: run.trainable.map(([n, t]) => [n, writeTensor(t)] as const),
    optimizer: [...optimizer.tensorState()].map(([n, t]) => [n, writeTensor(t)] as const),
    grads,
    state: state as unknown as Record<string, unknown>,
  };
}

/** Trainable weights and their gradients keep their dtype (bit-exact resume); moments are float32. */
function writeTensor(t: Tensor): WriteTensor {
  if (t.dtype === 'bfloat16' || t.dtype === 'float16') {
    return { dtype: t.dtype === 'bfloat16' ? 'BF16' : 'F16', shape: t.shape, data: () => t.toHostArray() as Uint16Array };
  }
  return { dtype: 'F32', shape: t.shape, data: () => t.toFloat32Array() };
}

/** Stored values for tensor `p`: 16-bit bits as they are when the dtypes match, else float32. */
function valuesFor(p: Tensor, host: HostTensor): Float32Array | Uint16Array {
  const same = (host.dtype === 'BF16' && p.dtype === 'bfloat16') || (host.dtype === 'F16' && p.dtype === 'float16');
  return same ? (host.data as Uint16Array) : hostToFloat32(host);
}

function restore(
  run: RunSetup,
  cfg: XtunerConfig,
  state: TrainerState,
  ck: LoadedCheckpoint,
  optimizer: AdamW,
  schedule: WarmupCosineSchedule,
  accumulation: Accumulation,
  rows: number,
): void {
  const mismatch = (what: string): never => {
    throw new XtunerError(`cannot resume from ${ck.dir}: ${what}`, { hint: 'resume with the config (and data) the checkpoint was trained with' });
  };
  if (state.method !== run.method) mismatch(`it was trained with ${state.method}, this config trains with ${run.method}`);
  if (state.maxIters !== accumulation.maxIters) mismatch(`it belongs to a run of ${state.maxIters} iterations, this config gives ${accumulation.maxIters}`);
  if (state.accumulativeCounts !== accumulation.counts) {
    mismatch(`it accumulated gradients over ${state.accumulativeCounts} iterations, this config over ${accumulation.counts}`);
  }
  if (state.dataRows !== rows) mismatch(`its data had ${state.dataRows} ${cfg.pack_to_max_length ? 'rows' : 'samples'}, this data has ${rows}`);
  // the seed orders (and packs) the data: another one trains on other batches from here on
  if (state.seed !== cfg.seed) mismatch(`it was trained with seed ${state.seed}, this run has seed ${cfg.seed} (--seed ${state.seed} continues it)`);
  const o = state.optimizer;
  const now = optimizer.scalars();
  for (const [key, was, is] of [['betas', o.betas.join(', '), now.betas.join(', ')], ['eps', o.eps, now.eps], ['weight_decay', o.weightDecay, now.weightDecay]] as const) {
    if (was !== is) mismatch(`its AdamW ${key} was ${was}, this config's is ${is}`);
  }
  const mine = new Map(run.trainable);
  for (const name of [...ck.trainable.keys(), ...(ck.grads?.keys() ?? [])]) {
    if (!mine.has(name)) mismatch(`it has weight '${name}', which does not train in this run`);
  }
  if (accumulation.pendingAfter(state.iter) !== (ck.grads !== null)) {
    mismatch(ck.grads ? 'it holds accumulated gradients at an optimizer step' : 'it was saved between optimizer steps but holds no accumulated gradients');
  }
  for (const [name, p] of run.trainable) {
    const host = ck.trainable.get(name);
    if (!host) return mismatch(`it lacks trainable weight '${name}'`);
    for (const [what, t] of [['', host], ['the gradient of ', ck.grads?.get(name)]] as const) {
      if (t && t.shape.join() !== p.shape.join()) mismatch(`${what}'${name}' is [${t.shape.join(', ')}] there, [${p.shape.join(', ')}] here`);
    }
    noGrad(() => p.assign(valuesFor(p, host)));
    const grad = ck.grads?.get(name);
    p.grad = grad ? zeros(p.shape, { dtype: p.dtype, device: p.device }).assign(valuesFor(p, grad)) : null;
  }
  const moments = new Map<string, Float32Array>();
  for (const [name, t] of ck.optimizer) moments.set(name, hostToFloat32(t));
  optimizer.loadState(state.optimizer, moments);
  schedule.loadStateDict(state.scheduler);
  if (run.loraDropout && state.loraDropout) run.loraDropout.setState(state.loraDropout);
}
