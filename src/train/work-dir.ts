// The work folder of a run (`work_dirs/<config name>/` by default) and its lock.
// Layout: the resolved config, `logs.jsonl`, eval-chat outputs, `iter_<N>/` checkpoints and
// `last_checkpoint`. The lock file keeps a second `xtuner train` from writing into a folder in use;
// a lock left by a process that no longer exists is taken over. Checkpoint contents live in
// checkpoint.ts, not here.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XtunerError } from '../errors.ts';
import { isAlive, removeStaleTemporaries, tmpName, writeFileAtomic } from '../io/atomic.ts';

export const LOCK_FILE = 'train.lock';
export const LOGS_FILE = 'logs.jsonl';
export const LAST_CHECKPOINT_FILE = 'last_checkpoint';
export const RESOLVED_CONFIG_FILE = 'config.resolved.json';
export const EVAL_CHAT_DIR = 'eval_chat';

/** `work_dirs/<config file name without extension>`, as XTuner names it. */
export function defaultWorkDir(configPath: string, cwd = process.cwd()): string {
  const base = path.basename(configPath).replace(/\.(ts|mts|js|mjs|json|ya?ml|py)$/, '');
  return path.resolve(cwd, 'work_dirs', base);
}

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

function readLock(file: string): LockInfo | null {
  try {
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockInfo>;
    if (typeof info.pid !== 'number' || typeof info.host !== 'string') return null;
    return { pid: info.pid, host: info.host, started: String(info.started ?? '') };
  } catch {
    return null;
  }
}

/**
 * Takes the lock of `workDir` (creating the folder). Refuses when a live process holds it; takes
 * over a lock whose process is gone. Returns the function that releases it.
 */
export function acquireWorkDirLock(workDir: string): () => void {
  fs.mkdirSync(workDir, { recursive: true });
  const file = path.join(workDir, LOCK_FILE);
  const mine: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    // Write the lock under a private name, then link it into place: link fails if a lock exists,
    // so two runs starting together cannot both win.
    const tmp = tmpName(file);
    fs.writeFileSync(tmp, `${JSON.stringify(mine)}\n`);
    try {
      fs.linkSync(tmp, file);
      fs.rmSync(tmp, { force: true });
      removeStaleTemporaries(workDir);
      return () => releaseLock(file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = readLock(file);
    if (held && held.host === mine.host && held.pid !== process.pid && isAlive(held.pid)) {
      throw new XtunerError(
        `work folder ${workDir} is in use by another xtuner train (pid ${held.pid}, started ${held.started})`,
        { hint: `wait for it to finish, stop it, or pass --work-dir to train into another folder` },
      );
    }
    if (held && held.host !== mine.host) {
      throw new XtunerError(
        `work folder ${workDir} is locked by a run on host ${held.host} (pid ${held.pid})`,
        { hint: `if that run is over, delete ${file}` },
      );
    }
    // Stale (dead pid) or unreadable lock: move it aside atomically, then try again.
    try {
      fs.renameSync(file, `${file}.stale-${process.pid}`);
      fs.rmSync(`${file}.stale-${process.pid}`, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new XtunerError(`could not take the lock ${file}: another run keeps taking it`);
}

function releaseLock(file: string): void {
  const held = readLock(file);
  if (held && held.pid === process.pid) fs.rmSync(file, { force: true });
}

/** The checkpoint folder named in `last_checkpoint`, or null when there is none. */
export function readLastCheckpoint(workDir: string): string | null {
  const file = path.join(workDir, LAST_CHECKPOINT_FILE);
  if (!fs.existsSync(file)) return null;
  const name = fs.readFileSync(file, 'utf8').trim();
  if (!name) return null;
  return path.isAbsolute(name) ? name : path.join(workDir, name);
}

export function writeLastCheckpoint(workDir: string, checkpointDir: string): void {
  writeFileAtomic(path.join(workDir, LAST_CHECKPOINT_FILE), `${path.basename(checkpointDir)}\n`);
}

/** `iter_<N>` folders of a work folder, oldest first. */
export function listCheckpoints(workDir: string): string[] {
  if (!fs.existsSync(workDir)) return [];
  return fs
    .readdirSync(workDir)
    .map((n) => /^iter_(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((m) => path.join(workDir, m[0]));
}

/**
 * Before a fresh (not resumed) run: a folder holding checkpoints of an earlier run is refused, so
 * nothing of it is overwritten or pruned; logs and eval-chat answers of a run that saved no
 * checkpoint are moved into `previous-<time>/`.
 */
export function prepareFreshWorkDir(workDir: string): void {
  const checkpoints = listCheckpoints(workDir).map((d) => path.basename(d));
  if (checkpoints.length > 0) {
    throw new XtunerError(`work folder ${workDir} holds checkpoints of an earlier run (${checkpoints.join(', ')})`, {
      hint: 'continue that run with --resume, or train into another folder with --work-dir (or delete this one)',
    });
  }
  const earlier = [LOGS_FILE, EVAL_CHAT_DIR].filter((f) => fs.existsSync(path.join(workDir, f)));
  if (earlier.length === 0) return;
  const aside = path.join(workDir, `previous-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  fs.mkdirSync(aside);
  for (const f of earlier) fs.renameSync(path.join(workDir, f), path.join(aside, f));
}
