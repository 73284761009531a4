// Public API of the tokenizer layer: loading a model folder's tokenizer, and XTuner's prompt templates.

export {
  loadTokenizer,
  Tokenizer,
  type ChatMessage,
  type ChatTemplateOptions,
  type DecodeOptions,
  type EncodeOptions,
} from './tokenizer.ts';
export {
  buildPrompt,
  formatTemplate,
  getPromptTemplate,
  isPromptTemplateName,
  PROMPT_TEMPLATE,
  SYSTEM_TEMPLATE,
  type PromptTemplate,
  type PromptTemplateName,
  type SystemTemplateName,
} from './templates.ts';
