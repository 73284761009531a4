// `--cfg-options key=value ...` overrides, as in XTuner: dotted keys reach into nested settings
// (`lora.r=16`), values are JSON where they parse as JSON (`lr=1e-5`, `betas=[0.9,0.95]`,
// `lora=null`, `pack_to_max_length=false`), else read as mmengine's DictAction reads them (Python
// spellings: `False`, `None`, `betas=0.9,0.95`, `(0.9,0.95)`, `[hello,world]`), and strings
// otherwise (`prompt_template=qwen_chat`). Applied to the raw config before validation, so
// overrides are validated like the file.

import { XtunerError } from '../errors.ts';

export interface CfgOverride {
  /** Key path, e.g. ['lora', 'r']. */
  path: string[];
  value: unknown;
  /** The option as written, for messages. */
  text: string;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'prototype', 'constructor']);

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return parseDictAction(text);
  }
}

/** mmengine's DictAction: an int, float, True/False (any case) or None, or a list of them by commas or brackets; else the string. */
function parseDictAction(text: string): unknown {
  const inner = /^\[.*\]$|^\(.*\)$/s.test(text) ? text.slice(1, -1) : null;
  if (inner === null && !text.includes(',')) {
    if (/^(true|false)$/i.test(text)) return text.toLowerCase() === 'true';
    if (text === 'None') return null;
    return text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text;
  }
  // top-level commas only: brackets nest ("[(1,2),(3,4)]")
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  const body = inner ?? text;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '[' || c === '(') depth++;
    else if (c === ']' || c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(body.slice(start));
  return parts.filter((p, i) => p !== '' || i < parts.length - 1).map(parseDictAction); // "a," is ["a"]
}

/** Parses `a.b=c` options; throws XtunerError naming the bad option. */
export function parseCfgOptions(options: readonly string[]): CfgOverride[] {
  return options.map((text) => {
    const eq = text.indexOf('=');
    if (eq <= 0) {
      throw new XtunerError(`--cfg-options: "${text}" is not KEY=VALUE`, {
        hint: 'e.g. --cfg-options lr=1e-5 lora.r=16 prompt_template=qwen_chat',
      });
    }
    const path = text.slice(0, eq).split('.');
    if (path.some((key) => key === '' || FORBIDDEN_KEYS.has(key))) {
      throw new XtunerError(`--cfg-options: "${text}" has a bad key path "${text.slice(0, eq)}"`);
    }
    return { path, value: parseValue(text.slice(eq + 1)), text };
  });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * A copy of `raw` with the overrides applied in order. A missing or null parent becomes an object
 * (`lora.r=16` on `lora: null` gives `lora: { r: 16 }`, the rest filled by defaults); an index
 * into an existing list replaces that item (`evaluation_inputs.0=hi`).
 */
export function applyCfgOptions(raw: Record<string, unknown>, overrides: readonly CfgOverride[]): Record<string, unknown> {
  const root = structuredClone(raw);
  for (const { path, value, text } of overrides) {
    let node: Record<string, unknown> | unknown[] = root;
    for (let i = 0; i < path.length; i++) {
      const key = path[i];
      const last = i === path.length - 1;
      if (Array.isArray(node)) {
        const index = Number(key);
        if (!Number.isInteger(index) || index < 0 || index > node.length) {
          throw new XtunerError(`--cfg-options: "${text}": ${path.slice(0, i).join('.')} is a list of ${node.length}; "${key}" is not an index in it`);
        }
        if (last) node[index] = value;
        else node = descend(node, index, path, i, text);
      } else if (last) {
        node[key] = value;
      } else {
        node = descend(node, key, path, i, text);
      }
    }
  }
  return root;
}

function descend(
  container: Record<string, unknown> | unknown[],
  key: string | number,
  path: readonly string[],
  i: number,
  text: string,
): Record<string, unknown> | unknown[] {
  const child = (container as Record<string | number, unknown>)[key];
  if (child === undefined || child === null) {
    const fresh: Record<string, unknown> = {};
    (container as Record<string | number, unknown>)[key] = fresh;
    return fresh;
  }
  if (isPlainObject(child) || Array.isArray(child)) return child;
  throw new XtunerError(`--cfg-options: "${text}": ${path.slice(0, i + 1).join('.')} is ${JSON.stringify(child)}, not an object`);
}

/**
 * Splits XTuner-style argv, where `--cfg-options` takes every following word up to the next
 * `--flag` (`--cfg-options a=1 b=2 --seed 3`), into the options and the remaining argv, so the
 * rest can go to `parseArgs`. `--cfg-options=a=1` and repeated `--cfg-options` work too.
 */
export function extractCfgOptions(argv: readonly string[]): { cfgOptions: string[]; rest: string[] } {
  const cfgOptions: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg.startsWith('--cfg-options=')) {
      cfgOptions.push(arg.slice('--cfg-options='.length));
    } else if (arg === '--cfg-options') {
      while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) cfgOptions.push(argv[++i]);
    } else {
      rest.push(arg);
    }
  }
  return { cfgOptions, rest };
}
