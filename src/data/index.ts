// Public API of the data pipeline: dataset files -> XTuner map functions -> prompt template ->
// ids and labels -> packed rows or padded batches, resumable by position. See README.md here.

export { DATASET_FORMATS, IMAGE_TOKEN, isDatasetFormat, mapRecord, RecordError, type DatasetFormat, type Turn } from './formats.ts';
export { formatLocation, formatProblem, listDataFiles, readRecords, type DataProblem, type Location, type SourceItem } from './sources.ts';
export {
  applyTemplate,
  encodeTurns,
  IGNORE_INDEX,
  IMAGE_TOKEN_INDEX,
  xtunerBosEos,
  type EncodedSample,
  type TemplatedTurn,
} from './encode.ts';
export { encodeWithChatTemplate } from './chat-template-encode.ts';
export { SampleEncoder, type EncodeOutcome, type SampleEncoderOptions } from './sample-encoder.ts';
export { collatePacked, collatePadded, packSamples, type Batch, type PackedRow, type PackOptions, type PackResult } from './pack.ts';
export { BatchLoader, type BatchLoaderOptions, type DataPosition } from './loader.ts';
export { permutation, seededRandom } from './rng.ts';
export {
  buildTrainData,
  dataFormatOf,
  encodeDataset,
  loadTrainData,
  type DataConfig,
  type DatasetStats,
  type EncodedDataset,
  type TrainData,
} from './dataset.ts';
export { checkDataset, formatCheckReport, formatLogItem, LOG_SHOW, type CheckReport, type LogShow } from './check.ts';
export { makeAssistantRecords, recordsText, type AssistantRecord } from './assistant-data.ts';
