// The built-in config library: the `.ts` files in `configs/` at the package root, named as XTuner
// names its configs (`<model>_<method>_<dataset>_e<epochs>`). Lists them, finds one by name, and
// copies one out for editing (`xtuner copy-cfg`).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XtunerError } from '../errors.ts';
import { didYouMean } from '../did-you-mean.ts';
import { writeFileAtomic } from '../io/atomic.ts';

/** `configs/` of this package; the same from `src/config/` and from the built `dist/config/`. */
export const CONFIGS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'configs');

/** How the shipped configs import their type; copies point it at the installed package instead. */
export const LIBRARY_TYPE_IMPORT = "'../src/config/index.ts'";
const PACKAGE_TYPE_IMPORT = "'xtuner-ts'";

export interface BuiltinConfig {
  name: string;
  path: string;
}

/** Every built-in config, sorted by name. */
export function listBuiltinConfigs(dir: string = CONFIGS_DIR): BuiltinConfig[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
    .map((file) => ({ name: file.slice(0, -'.ts'.length), path: path.join(dir, file) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The built-in config of that name; throws with a suggestion when there is none. */
export function findBuiltinConfig(name: string, dir: string = CONFIGS_DIR): BuiltinConfig {
  const all = listBuiltinConfigs(dir);
  const found = all.find((c) => c.name === name);
  if (found !== undefined) return found;
  throw new XtunerError(`no built-in config named "${name}"${didYouMean(name, all.map((c) => c.name))}`, {
    hint: 'list them with `xtuner list-cfg` (or `xtuner list-cfg -p PATTERN`)',
  });
}

/**
 * A config argument as `xtuner train` takes it: an existing file, or the name of a built-in
 * config (as XTuner accepts `xtuner train internlm2_chat_1_8b_qlora_alpaca_e3`).
 */
export function resolveConfigPath(nameOrPath: string, dir: string = CONFIGS_DIR): string {
  if (fs.existsSync(nameOrPath)) return path.resolve(nameOrPath);
  const looksLikeName = !nameOrPath.includes('/') && !nameOrPath.includes('\\') && path.extname(nameOrPath) === '';
  if (looksLikeName) return findBuiltinConfig(nameOrPath, dir).path;
  throw new XtunerError(`config ${nameOrPath} does not exist`, {
    hint: 'pass a config file, or the name of a built-in config (`xtuner list-cfg`)',
  });
}

/** XTuner's copy name: `<name>_copy.ts`. */
export function copyName(name: string): string {
  return `${name}_copy.ts`;
}

/**
 * Copies a built-in config into `destDir` as `<name>_copy.ts`, with its type import pointed at the
 * `xtuner-ts` package so it type-checks where the package is installed (the import is type-only,
 * so the copy loads anywhere). Refuses to overwrite an existing file unless `force`.
 */
export function copyBuiltinConfig(name: string, destDir: string, options: { force?: boolean; dir?: string } = {}): string {
  const config = findBuiltinConfig(name, options.dir);
  const dest = path.resolve(destDir, copyName(name));
  if (fs.existsSync(dest) && !options.force) {
    throw new XtunerError(`${dest} already exists`, { hint: 'pass --force to overwrite it, or copy into another folder' });
  }
  writeFileAtomic(dest, fs.readFileSync(config.path, 'utf8').replaceAll(LIBRARY_TYPE_IMPORT, PACKAGE_TYPE_IMPORT));
  return dest;
}
