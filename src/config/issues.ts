// Turns zod's validation issues into one line each: "<file>: <key path>: <what was expected>",
// with a did-you-mean for unknown keys and unknown enum values.

import type { z } from 'zod';
import { CONFIG_KEYS, XTUNER_KEY_ADVICE, loraSchema, quantizationSchema } from './schema.ts';
import { didYouMean } from '../did-you-mean.ts';

type Issue = z.core.$ZodIssue;
type PathKey = PropertyKey;

/** Keys allowed in each nested object, by the path of that object. */
const KEYS_AT: Record<string, readonly string[]> = {
  '': CONFIG_KEYS,
  lora: Object.keys(loraSchema.shape),
  quantization: Object.keys(quantizationSchema.shape),
};

/** `lora.r`, `evaluation_inputs[1]`; `(top level)` for the root. */
export function formatKeyPath(path: readonly PathKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(top level)' : out;
}

function valueAt(root: unknown, path: readonly PathKey[]): unknown {
  let value = root;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const TYPE_NAMES: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'an object',
  tuple: 'a list',
};

function describeIssue(issue: Issue, input: unknown): string {
  const value = valueAt(input, issue.path);
  const got = show(value);
  switch (issue.code) {
    case 'invalid_type': {
      const expected = TYPE_NAMES[issue.expected] ?? issue.expected;
      return value === undefined ? `missing: expected ${expected}` : `expected ${expected}, got ${got}`;
    }
    case 'invalid_union':
      // Unions carry their own "expected ..." message in the schema.
      return value === undefined ? `missing: ${issue.message}` : `${issue.message}, got ${got}`;
    case 'invalid_value': {
      const options = issue.values.map((v) => show(v)).join(', ');
      const hint = typeof value === 'string' ? didYouMean(value, issue.values.map(String)) : '';
      if (issue.values.length === 1) return `expected ${options}, got ${got}`;
      if (issue.values.length > 10) return `got ${got}, not one of the ${issue.values.length} known names${hint}`;
      return `expected one of ${options}; got ${got}${hint}`;
    }
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const op = issue.code === 'too_small' ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
      if (issue.origin === 'array' || issue.origin === 'string') {
        const what = issue.origin === 'array' ? 'items' : 'characters';
        return `expected ${op} ${String(bound)} ${what}, got ${got}`;
      }
      return `expected a value ${op} ${String(bound)}, got ${got}`;
    }
    case 'custom':
      // Rules about the whole config (params.whole) are not about one value.
      return (issue.params as { whole?: boolean } | undefined)?.whole ? issue.message : `${issue.message}, got ${got}`;
    default:
      return `${issue.message}, got ${got}`;
  }
}

/** One line per problem. `where` names the source of a key path ("configs/x.ts", "--cfg-options lr=0"). */
export function formatIssues(issues: readonly Issue[], input: unknown, where: (keyPath: readonly PathKey[]) => string): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = KEYS_AT[issue.path.join('.')] ?? [];
      for (const key of issue.keys) {
        const advice = issue.path.length === 0 ? XTUNER_KEY_ADVICE[key] : undefined;
        const suffix = advice !== undefined ? ` (${advice})` : didYouMean(key, allowed);
        const keyPath = [...issue.path, key];
        lines.push(`${where(keyPath)}: ${formatKeyPath(keyPath)}: unknown key${suffix}`);
      }
      continue;
    }
    lines.push(`${where(issue.path)}: ${formatKeyPath(issue.path)}: ${describeIssue(issue, input)}`);
  }
  return lines;
}
