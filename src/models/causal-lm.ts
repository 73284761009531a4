// CausalLM: the decoder plus its LM head, with the HF causal-LM loss, packed rows, KV-cached
// decoding and HF folder saving. Built by loadModel/createModel (./load.ts) from a config.json
// object and a source of parameters. `config` is the parsed config.json, kept as is. Training
// memory: per-layer activation checkpointing (setGradientCheckpointing) and, with
// `{ logits: false }`, a loss computed over row chunks so [B*T, V] logits never exist whole.

import { XtunerError } from '../errors.ts';
import { add, checkpoint, crossEntropy, defaultDropoutStream, isGradEnabled, keep, noGrad, toDevice, reshape, scale, slice, tensor, tidy, type DType, type Device, type DropoutStream, type EmbeddingIds, type HostIds, type Tensor } from '../tensor/index.ts';
import { Linear, Module, type LinearLike } from '../nn/index.ts';
import { generateIds, type DecodingModel, type GenerateOptions } from '../generate/decode.ts';
import { DecodeGraph } from '../generate/decode-graph.ts';
import { PreallocatedKvCache } from '../generate/kv-cache.ts';
import { TensorLogitsRow } from '../generate/logits-row.ts';
import type { LogitsRow } from '../generate/sampling.ts';
import type { Architecture } from './architectures.ts';
import type { DecoderConfig } from './config.ts';
import { DecoderModel, keepLinear, type KvCache, type LinearHook, type ParamSource, type StepContext } from './decoder.ts';
import { checkCuSeqlens, checkSameShape, checkVocab, defaultPositions, padCuSeqlens, shiftLabels, toIdBatch, type IdBatch, type IdsInput } from './inputs.ts';
import { inverseFrequencies, RopeRows } from './rope.ts';
import { saveHf, type SaveOptions } from './save.ts';
import { PersistentBuffer, StepInputBuffer, type DeviceInputs } from './step-inputs.ts';

export interface ForwardOptions {
  /** Same shape as inputIds; -100 where not supervised. Shifted by one inside (HF semantics). */
  labels?: IdsInput;
  /** Same shape as inputIds; default 0..T-1 in every row. Packed rows restart per sample. */
  positionIds?: IdsInput;
  /** Sample boundaries over the flattened B*T tokens, [0, ..., B*T]; attention never crosses them. */
  cuSeqlens?: Int32Array | readonly number[];
}

/** Tokens per chunk of the loss-only path: logits of 1024 x 152k float32 are ~600 MiB. */
export const LOSS_CHUNK_ROWS = 1024;

/**
 * The training path: the loss only. The LM head and the loss run over `lossChunkRows` tokens at a
 * time, each chunk checkpointed (its logits are freed after its loss and recomputed in the backward).
 */
export interface LossOnlyOptions extends ForwardOptions {
  labels: IdsInput;
  logits: false;
  /** Tokens per chunk; default LOSS_CHUNK_ROWS. */
  lossChunkRows?: number;
}

export interface ForwardOutput {
  logits: Tensor; // [B, T, V]
  /** Mean cross-entropy over supervised targets (0 when none); present when labels were given. */
  loss?: Tensor;
}

/** A forward's checked inputs, on the device (CausalLM.prepare). */
export interface PreparedBatch {
  readonly ids: IdBatch;
  /** The shifted targets, -100 where none; null without labels. */
  readonly targets: Int32Array | null;
  readonly cuSeqlens: Int32Array | null;
  readonly dev: DeviceInputs;
  readonly rope: { cos: Tensor; sin: Tensor }; // [B, T, D] each
  /** With the embedding table in host memory: the ids' rows, uploaded [B, T, H]; else null (gathered on the device). */
  readonly embeds: Tensor | null;
  /** `{ logits: false }`: the loss over row chunks only. */
  readonly lossOnly: boolean;
  readonly lossChunkRows: number;
  /** Batches of equal signatures get the same launches from forwardPrepared (shapes, cuSeqlens capacity, outputs). */
  readonly signature: string;
}

export interface LossOutput {
  /** Mean cross-entropy over the supervised targets of the whole batch (0 when none), as HF's. */
  loss: Tensor;
}

export interface CausalLMOptions {
  dtype: DType;
  device: Device;
  /** What to keep for each linear layer as it is built (default: the layer itself). */
  linear?: LinearHook;
  /**
   * Where the token embedding table lives when not on `device` ('cpu': host memory, the rows a
   * forward needs gathered there and uploaded). Ignored when the head is tied to it.
   */
  embeddingDevice?: Device;
}

export class CausalLM extends Module implements DecodingModel {
  /** The parsed config.json. */
  readonly config: Record<string, unknown>;
  /** The folder's generation_config.json, where it has one: its eos_token_id is what generation stops at. */
  generationConfig: Record<string, unknown> | null = null;
  readonly #cfg: DecoderConfig;
  readonly #arch: Architecture;
  readonly #dtype: DType;
  readonly #device: Device;
  /** The persistent device buffer of forward's int32 inputs (one upload per step). */
  readonly #inputs = new StepInputBuffer();
  /** The persistent device buffer of the rope tables, cos | sin (one upload per step). */
  readonly #ropeTables: PersistentBuffer;
  /** The rope's cos and sin rows by position, on the host in the model's dtype. */
  readonly #ropeRows: RopeRows;
  /** With the embedding table in host memory: the persistent device buffer of a forward's rows. */
  readonly #embeds: PersistentBuffer;
  #invFreq: { seqLen: number; inv: Float32Array } | null = null;
  #checkpointLayers = false;
  #replayStreams: readonly DropoutStream[] = [defaultDropoutStream];

  constructor(config: Record<string, unknown>, cfg: DecoderConfig, arch: Architecture, p: ParamSource, opts: CausalLMOptions) {
    super();
    this.config = config;
    this.#cfg = cfg;
    this.#arch = arch;
    this.#dtype = opts.dtype;
    this.#device = opts.device;
    this.#ropeTables = new PersistentBuffer(opts.dtype);
    this.#ropeRows = new RopeRows(opts.dtype);
    this.#embeds = new PersistentBuffer(opts.dtype);
    const hook = opts.linear ?? keepLinear;
    const l = arch.layout;
    const apart = opts.embeddingDevice !== undefined && opts.embeddingDevice !== opts.device && !cfg.tieWordEmbeddings;
    const inner = new DecoderModel(cfg, l, p, hook, l.model, apart ? opts.embeddingDevice : undefined);
    this.addModule(l.model, inner);
    // Tied: the head holds the embedding's own tensor, so both uses add into one gradient (and it
    // stays a plain Linear: the hook would replace the embedding's weight).
    if (cfg.tieWordEmbeddings) this.addModule(l.head, new Linear(inner.embeddingModule().weight));
    else this.addModule(l.head, hook(l.head, new Linear(p(`${l.head}.weight`, [cfg.vocabSize, cfg.hiddenSize], 'normal'))));
  }

  get decoderConfig(): Readonly<DecoderConfig> {
    return this.#cfg;
  }

  get architecture(): Architecture {
    return this.#arch;
  }

  get modelType(): string {
    return this.#arch.modelType;
  }

  get dtype(): DType {
    return this.#dtype;
  }

  get device(): Device {
    return this.#device;
  }

  /** Whether the embedding table lives in host memory, apart from the model (LoadOptions.embeddingOnHost). */
  get embeddingOnHost(): boolean {
    return this.#inner().embeddingModule().weight.device !== this.#device;
  }

  get vocabSize(): number {
    return this.#cfg.vocabSize;
  }

  /**
   * Activation checkpointing per decoder layer (HF's gradient_checkpointing_enable): while grads
   * are recorded each layer keeps only its output and runs again in the backward pass. `streams`:
   * every dropout stream the layers draw from while training (LoRA dropout's), replayed so the
   * recomputation draws the same masks; also replayed by the chunked loss. Default: the engine's.
   */
  setGradientCheckpointing(on: boolean, streams?: readonly DropoutStream[]): void {
    this.#checkpointLayers = on;
    if (streams) this.#replayStreams = [...streams];
  }

  get gradientCheckpointing(): boolean {
    return this.#checkpointLayers;
  }

  forward(inputIds: IdsInput, opts: LossOnlyOptions): LossOutput;
  forward(inputIds: IdsInput, opts?: ForwardOptions & { logits?: true }): ForwardOutput;
  forward(inputIds: IdsInput, opts: ForwardOptions & { logits?: boolean; lossChunkRows?: number } = {}): ForwardOutput | LossOutput {
    return this.forwardPrepared(this.prepare(inputIds, opts));
  }

  /**
   * The host half of a forward: the inputs checked (errors name the bad value) and written to the
   * device (one upload of the int32 inputs, one of the loss scale, one of the rope tables, into
   * buffers that keep their addresses from step to step). `forwardPrepared` then only queues device
   * work, and the same launches for every batch of the same `signature`: a CUDA graph captured from
   * one batch replays for the next (src/train/step.ts). The views it holds go with the enclosing scope.
   */
  prepare(inputIds: IdsInput, opts: ForwardOptions & { logits?: boolean; lossChunkRows?: number } = {}): PreparedBatch {
    if (opts.logits === false && opts.labels === undefined) {
      throw new XtunerError('forward: { logits: false } needs labels (the loss is then the only output)');
    }
    const rows = opts.lossChunkRows ?? LOSS_CHUNK_ROWS;
    if (!(Number.isInteger(rows) && rows > 0)) throw new XtunerError(`forward: lossChunkRows must be a positive integer, got ${rows}`);
    const ids = toIdBatch(inputIds, 'inputIds');
    checkVocab(ids, this.#cfg.vocabSize, 'inputIds');
    let positions: Int32Array;
    if (opts.positionIds !== undefined) {
      const p = toIdBatch(opts.positionIds, 'positionIds');
      checkSameShape(p, ids, 'positionIds');
      if (p.data.some((v) => v < 0)) throw new XtunerError('positionIds: negative position');
      positions = p.data;
    } else positions = defaultPositions(ids.b, ids.t);
    const cu = opts.cuSeqlens === undefined ? undefined : checkCuSeqlens(opts.cuSeqlens, ids.b * ids.t);
    this.#checkWindow(ids, cu);
    const labels = opts.labels === undefined ? null : toIdBatch(opts.labels, 'labels');
    if (labels) this.#checkLabels(labels, ids);
    const targets = labels ? shiftLabels(labels) : null;

    // every int32 input in one upload, before any kernel of the step: nothing uploads per layer or loss chunk
    const dev = this.#inputs.upload(this.#device, ids.data, ids.b, ids.t, targets, cu ? padCuSeqlens(cu) : null);
    const lossOnly = opts.logits === false;
    const signature = `${ids.b}x${ids.t} ${dev.cuSeqlens ? `cu${dev.cuSeqlens.size}` : 'rows'} ${targets ? 'labels' : 'no-labels'} ${lossOnly ? `loss/${rows}` : 'logits'}`;
    const rope = this.#rope(positions, ids.b, ids.t, this.#ropeTables);
    return { ids, targets, cuSeqlens: cu ?? null, dev, rope, embeds: this.#hostEmbeds(ids, this.#embeds), lossOnly, lossChunkRows: rows, signature };
  }

  /** The device half of a forward (see prepare). */
  forwardPrepared(p: PreparedBatch): ForwardOutput | LossOutput {
    const { ids, dev } = p;
    // the rope views live as long as the scope that prepared them: layers checkpointed under ctx read them again in the backward
    const ctx: StepContext = {
      ...p.rope,
      ...(p.cuSeqlens ? { cuSeqlens: p.cuSeqlens, cuSeqlensOnDevice: dev.cuSeqlens! } : {}),
      ...(this.#checkpointLayers ? { checkpointStreams: this.#replayStreams } : {}),
    };
    const input = p.embeds ? { embeds: p.embeds } : { data: ids.data, shape: [ids.b, ids.t], onDevice: dev.ids };
    const hidden = this.#inner().forward(input, ctx); // [B, T, H]
    if (p.lossOnly) return { loss: this.#chunkedLoss(hidden, p.targets!, dev.targets!, dev.lossScale!, p.lossChunkRows) };
    const logits = this.#logits(hidden); // [B, T, V]
    if (!p.targets) return { logits };
    const flat = reshape(logits, [ids.b * ids.t, this.#cfg.vocabSize]); // [B*T, V]
    return { logits, loss: crossEntropy(flat, p.targets, { ignoreIndex: -100, labelsOnDevice: dev.targets! }) };
  }

  #checkLabels(labels: IdBatch, ids: IdBatch): void {
    checkSameShape(labels, ids, 'labels');
    labels.data.forEach((v, i) => {
      if (v !== -100 && (v < 0 || v >= this.#cfg.vocabSize)) {
        throw new XtunerError(`labels[${Math.floor(i / ids.t)}][${i % ids.t}] = ${v} is neither -100 nor in the vocabulary [0, ${this.#cfg.vocabSize})`);
      }
    });
  }

  /**
   * HF's loss (the mean over every supervised target of the batch) from hidden [B, T, H] and the
   * shifted targets, `rows` tokens at a time: the chunks' sums of -log p, times 1 / the batch's
   * supervised targets read on the device (`lossScale`). Every chunk runs, supervised or not, and no
   * launch takes a count: the launches depend on the shapes only.
   */
  #chunkedLoss(hidden: Tensor, targets: Int32Array, targetsOnDevice: Tensor, lossScale: Tensor, rows: number): Tensor {
    const n = targets.length;
    const flat = reshape(hidden, [n, hidden.shape[2]!]); // [B*T, H]
    let sum: Tensor | null = null;
    for (let s = 0; s < n; s += rows) {
      const e = Math.min(n, s + rows);
      const chunk = targets.slice(s, e);
      // the chunk's targets on the device: an input of the checkpoint, so its recomputation has them
      const onDevice = targetsOnDevice._view(s, [e - s]);
      const lossOf = (x: Tensor, lab: Tensor): Tensor => crossEntropy(this.#logits(x), chunk, { ignoreIndex: -100, labelsOnDevice: lab, reduction: 'sum' });
      const part = checkpoint(lossOf, [slice(flat, 0, s, e), onDevice], { streams: this.#replayStreams });
      onDevice.dispose();
      sum = sum ? add(sum, part) : part;
    }
    return scale(sum!, lossScale);
  }

  /** Writes config.json + safetensors to `dir` (see ./save.ts). */
  saveHf(dir: string, opts: SaveOptions = {}): void {
    saveHf(this, dir, opts);
  }

  /** Generates after `promptIds` and returns the new ids only (the stop id included when hit). */
  generate(promptIds: readonly number[], opts: GenerateOptions): number[] {
    return generateIds(this, promptIds, opts);
  }

  // ---- DecodingModel ----

  /** eos_token_id of generation_config.json, else of config.json (as transformers' generate reads them). */
  defaultStopIds(): number[] {
    const eos = this.generationConfig?.eos_token_id ?? this.config.eos_token_id;
    if (typeof eos === 'number') return [eos];
    return Array.isArray(eos) ? eos.filter((x): x is number => typeof x === 'number') : [];
  }

  createKvCache(maxLen: number): KvCache {
    const { numLayers, numKvHeads, headDim } = this.#cfg;
    return new PreallocatedKvCache({ numLayers, batch: 1, maxLen, numKvHeads, headDim }, this.#dtype, this.#device);
  }

  /**
   * One decoding step: the logits of the last position [V] on the host; every tensor it makes is
   * freed before it returns (the cache keeps its own).
   */
  nextLogits(ids: Int32Array, cache: KvCache): Float32Array {
    const row = this.nextRow(ids, cache);
    try {
      return row.toFloat32Array();
    } finally {
      row.dispose();
    }
  }

  /**
   * One decoding step: the logits of the last position as a row on the model's device (see
   * src/generate/logits-row.ts), valid until the next step. On CUDA a step of one token goes
   * through the cache's decoding graph (src/generate/decode-graph.ts) unless XTUNER_CUDA_GRAPHS=0.
   */
  nextRow(ids: Int32Array, cache: KvCache): LogitsRow {
    const t = ids.length;
    const batch: IdBatch = { data: ids, b: 1, t };
    checkVocab(batch, this.#cfg.vocabSize, 'ids');
    this.#checkWindow({ data: ids, b: 1, t: cache.length + t }, undefined);
    const positions = defaultPositions(1, t, cache.begin(t));
    const graph = t === 1 ? this.#decodeGraph(cache) : null;
    return noGrad(() =>
      tidy(() => {
        if (graph) {
          // the step's inputs into the graph's buffers, then its device work; the logits are the graph's
          const embeds = this.#hostEmbeds(batch, graph.embeds);
          const onDevice = embeds ?? graph.ids.write(this.#device, ids)._view(0, [1, 1]);
          const input = embeds ? { embeds } : { ...this.#ids(batch), onDevice };
          const rope = this.#rope(positions, 1, 1, graph.rope);
          const { logits, own } = graph.step(() => this.#decode(input, rope, cache), [onDevice, rope.cos, rope.sin]);
          return new TensorLogitsRow(logits, own);
        }
        const embeds = this.#hostEmbeds(batch, null);
        return new TensorLogitsRow(keep(this.#decode(embeds ? { embeds } : this.#ids(batch), this.#rope(positions, 1, t, null), cache)), true);
      }),
    );
  }

  /** The device work of a decoding step: logits [1, 1, V] of the last position. */
  #decode(input: EmbeddingIds | { embeds: Tensor }, rope: { cos: Tensor; sin: Tensor }, cache: KvCache): Tensor {
    const hidden = this.#inner().forward(input, { ...rope, cache }); // [1, T, H]
    const t = hidden.shape[1]!;
    return this.#logits(slice(hidden, 1, t - 1, t)); // [1, 1, H]: only the last position needs the head
  }

  /** The cache's decoding graph, made on first use; null where decoding runs op by op. */
  #decodeGraph(cache: KvCache): DecodeGraph | null {
    if (this.#device !== 'cuda' || process.env['XTUNER_CUDA_GRAPHS'] === '0' || !(cache instanceof PreallocatedKvCache)) return null;
    cache.decodeGraph ??= new DecodeGraph(this.#dtype);
    return cache.decodeGraph.on ? cache.decodeGraph : null;
  }

  // ---- internals ----

  #inner(): DecoderModel {
    return this.child<DecoderModel>(this.#arch.layout.model);
  }

  /** The ids as the embedding takes them from the host: checked there, then uploaded (no read-back). */
  #ids(ids: IdBatch): HostIds {
    return { data: ids.data, shape: [ids.b, ids.t] };
  }

  /**
   * With the embedding table in host memory: the ids' rows [B, T, H], gathered there and uploaded
   * in one copy (into `into`, a buffer that keeps its address for a captured step; else a fresh
   * tensor); null when the table is on the model's device.
   */
  #hostEmbeds(ids: IdBatch, into: PersistentBuffer | null): Tensor | null {
    const table = this.#inner().embeddingModule();
    if (table.weight.device === this.#device) return null;
    if (table.weight.requiresGrad && isGradEnabled()) {
      throw new XtunerError('the embedding table is in host memory, where it cannot train', { hint: 'load the model without embeddingOnHost to train the embedding' });
    }
    const rows = noGrad(() => table.forward(this.#ids(ids))); // [B, T, H] on the host
    const out = into ? into.write(this.#device, rows)._view(0, rows.shape) : toDevice(rows, this.#device);
    rows.dispose();
    return out;
  }

  #logits(hidden: Tensor): Tensor {
    return this.child<LinearLike>(this.#arch.layout.head).forward(hidden);
  }

  /**
   * cos/sin [B, T, D] for the given positions, in one upload: into `into`, a buffer that keeps its
   * address (training steps and captured decoding steps read them from the same place every
   * step), else into a fresh one that goes with its views.
   */
  #rope(positions: Int32Array, b: number, t: number, into: PersistentBuffer | null): { cos: Tensor; sin: Tensor } {
    const { rope, headDim } = this.#cfg;
    let maxPos = 0;
    for (const p of positions) if (p > maxPos) maxPos = p;
    // Only dynamic NTK depends on the length; the others are computed once.
    const seqLen = rope.type === 'dynamic' ? Math.max(maxPos + 1, rope.originalMaxPositions) : 0;
    if (this.#invFreq?.seqLen !== seqLen) this.#invFreq = { seqLen, inv: inverseFrequencies(rope, headDim, seqLen) };
    const both = this.#ropeRows.gather(this.#invFreq.inv, positions); // [cos | sin], one upload
    const buf = into ? into.write(this.#device, both) : tensor(both, undefined, { dtype: this.#dtype, device: this.#device });
    const views = { cos: buf._view(0, [b, t, headDim]), sin: buf._view(both.length / 2, [b, t, headDim]) };
    if (!into) buf.dispose(); // the views keep it until they go
    return views;
  }

  /** Sliding-window attention is not implemented: refuse sequences that would need it. */
  #checkWindow(ids: IdBatch, cu: Int32Array | undefined): void {
    const w = this.#cfg.slidingWindow;
    if (w === null) return;
    let longest = ids.t;
    if (cu) {
      longest = 0;
      for (let i = 1; i < cu.length; i++) longest = Math.max(longest, cu[i]! - cu[i - 1]!);
    }
    if (longest > w) {
      throw new XtunerError(`sequence of ${longest} tokens exceeds this model's sliding_window (${w}), which is not implemented`, {
        hint: `use sequences of at most ${w} tokens (max_length)`,
      });
    }
  }
}
