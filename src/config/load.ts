// Loading a config file: TypeScript (`.ts`/`.mts`/`.cts`, compiled at run time by tsx), JavaScript
// (`.js`/`.mjs`), JSON or YAML; then `--cfg-options` overrides; then validation against the one
// schema, which fills in XTuner's defaults. Every failure is an XtunerError naming the file.

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { XtunerError } from '../errors.ts';
import { applyCfgOptions, parseCfgOptions } from './cfg-options.ts';
import { formatIssues } from './issues.ts';
import { configSchema, type XtunerConfig, type XtunerConfigInput } from './schema.ts';

export const CONFIG_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.json', '.yaml', '.yml'] as const;

export interface LoadConfigOptions {
  /** `key=value` overrides (`--cfg-options`), applied before validation. */
  cfgOptions?: readonly string[];
}

/**
 * Typed identity for `.ts` configs: `export default defineConfig({ ... })` gives completion and
 * checking in the editor. It adds nothing at run time.
 */
export function defineConfig(config: XtunerConfigInput): XtunerConfigInput {
  return config;
}

/** Reads, overrides and validates a config file. */
export async function loadConfig(file: string, options: LoadConfigOptions = {}): Promise<XtunerConfig> {
  const overrides = parseCfgOptions(options.cfgOptions ?? []);
  const raw = applyCfgOptions(await readConfigFile(file), overrides);
  // A problem under an overridden key is reported against the override, not the file.
  const where = (keyPath: readonly PropertyKey[]): string => {
    const override = overrides.findLast((o) => o.path.every((key, i) => String(keyPath[i]) === key));
    return override === undefined ? file : `--cfg-options ${override.text}`;
  };
  return validateConfig(raw, where);
}

/**
 * Validates a raw config object. `where` names the source in messages: a string, or a function
 * of the key path (to tell file values from overrides).
 */
export function validateConfig(raw: unknown, where: string | ((keyPath: readonly PropertyKey[]) => string)): XtunerConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const lines = formatIssues(result.error.issues, raw, typeof where === 'string' ? () => where : where);
  throw new XtunerError(`invalid config:\n  ${lines.join('\n  ')}`, {
    hint: 'the keys and their defaults are XTuner\'s; see `configs/` (`xtuner list-cfg`) for complete examples',
  });
}

/** The object a config file describes, not yet validated. */
export async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  const ext = path.extname(file).toLowerCase();
  if (!(CONFIG_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new XtunerError(`config ${file}: unsupported extension "${ext}"`, {
      hint: `a config is one of ${CONFIG_EXTENSIONS.join(' ')}${ext === '.py' ? ' (XTuner .py configs: copy their PART 1 settings into a .ts config)' : ''}`,
    });
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new XtunerError(`config ${file} does not exist`, { hint: 'built-in configs are listed by `xtuner list-cfg`' });
  }
  if (!stat.isFile()) throw new XtunerError(`config ${file} is not a file`);

  let value: unknown;
  if (ext === '.json') value = parseJson(file);
  else if (ext === '.yaml' || ext === '.yml') value = parseYaml(file);
  else value = await importModule(file, ext);

  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value;
    throw new XtunerError(`config ${file}: expected an object of settings at the top level, got ${got}`);
  }
  return value as Record<string, unknown>;
}

function parseJson(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new XtunerError(`config ${file}: not valid JSON: ${(err as Error).message}`);
  }
}

function parseYaml(file: string): unknown {
  const doc = YAML.parseDocument(fs.readFileSync(file, 'utf8'));
  const first = doc.errors[0];
  if (first !== undefined) {
    const at = first.linePos?.[0];
    const what = first.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    throw new XtunerError(`config ${file}: not valid YAML: ${at ? `line ${at.line}, column ${at.col}: ` : ''}${what}`);
  }
  return doc.toJS();
}

async function importModule(file: string, ext: string): Promise<unknown> {
  // A fresh URL per load, so a config edited during the process is read again.
  const url = `${pathToFileURL(path.resolve(file)).href}?load=${Date.now()}-${Math.random().toString(36).slice(2)}`;
  let mod: Record<string, unknown>;
  try {
    if (ext === '.js' || ext === '.mjs') {
      mod = (await import(url)) as Record<string, unknown>;
    } else {
      const { tsImport } = await import('tsx/esm/api');
      mod = (await tsImport(url, { parentURL: import.meta.url, tsconfig: false })) as Record<string, unknown>;
    }
  } catch (err) {
    throw moduleError(file, err);
  }
  // A .ts file outside an ESM package is compiled to CommonJS; its exports then sit one level down.
  let exported = mod.default;
  if (exported !== null && typeof exported === 'object' && (exported as { __esModule?: unknown }).__esModule === true) {
    exported = (exported as { default?: unknown }).default;
  }
  if (exported === undefined) {
    throw new XtunerError(`config ${file} has no default export`, {
      hint: 'end it with `export default defineConfig({ ... })`',
    });
  }
  return exported;
}

function moduleError(file: string, err: unknown): XtunerError {
  const e = err as NodeJS.ErrnoException;
  const lines = String(e?.message ?? err).split('\n');
  // a syntax error from the TypeScript compiler (esbuild): "Transform failed with 1 error:", then FILE:LINE:COL: ERROR: TEXT
  const syntax = lines.map((l) => /^(.*:\d+:\d+): ERROR: (.*)$/.exec(l)).find((m) => m !== null);
  const message = syntax ? `${syntax[1]}: ${syntax[2]}` : lines[0];
  if (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') {
    const missing = /['"]([^'"]+)['"]/.exec(message)?.[1] ?? 'a module';
    return new XtunerError(`config ${file} imports ${missing}, which cannot be found from ${path.dirname(path.resolve(file))}`, {
      hint: missing.startsWith('xtuner-ts')
        ? 'install xtuner-ts beside the config (`npm install xtuner-ts`), or import only types: `import type { XtunerConfigInput } from \'xtuner-ts\'` and `export default { ... } satisfies XtunerConfigInput`'
        : undefined,
      cause: err,
    });
  }
  return new XtunerError(`config ${file} failed to load: ${message}`, { cause: err });
}
