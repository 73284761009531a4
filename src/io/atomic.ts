// The one way files are written for others to read (configs, logs, eval answers, safetensors,
// checkpoints, downloads): the bytes go to `<target>.tmp-<pid>` beside the target, are fsynced,
// and the temporary is renamed over the target only when complete; the folder is then fsynced so
// the rename itself survives a power cut. A crash or a full disk never leaves a half-written file
// where a reader looks: the target is the old file or the new one. A folder can be built the same
// way (writeDirAtomic). Failures of the file system are XtunerErrors naming the target.
// Not here: formats (safetensors.ts, ...), appending to logs, locking (src/train/work-dir.ts).

import fs from 'node:fs';
import path from 'node:path';
import { XtunerError } from '../errors.ts';

/** fs.writeSync takes at most 2 GiB per call. */
const IO_CHUNK = 1 << 30;

/** Appends bytes to the file being written. */
export type ByteWriter = (bytes: Uint8Array) => void;

/** The temporary name of an atomic write of `target` by this process. */
export function tmpName(target: string): string {
  return `${target}.tmp-${process.pid}`;
}

/** A system error while writing `target`, as one message naming it (XtunerErrors pass through). */
function writeError(target: string, err: unknown): unknown {
  if (err instanceof XtunerError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const hint =
    code === 'ENOSPC' ? 'the disk is full: free some space and try again' :
    code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? `check that ${path.dirname(target)} is writable` :
    undefined;
  return new XtunerError(`cannot write ${target}: ${(err as Error).message}`, { cause: err, ...(hint ? { hint } : {}) });
}

/** Flushes a folder's entries (the renames in it) to disk; where a platform cannot, nothing. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a folder; the file data is synced already.
  } finally {
    fs.closeSync(fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) {
    done += fs.writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done));
  }
}

/** An open temporary beside `target`; `commit` renames it into place, `abort` removes it. */
function begin(target: string): { write: ByteWriter; commit(): void; abort(): void } {
  const tmp = tmpName(target);
  let fd: number | null = fs.openSync(tmp, 'w');
  const close = (): void => {
    if (fd !== null) fs.closeSync(fd);
    fd = null;
  };
  return {
    write: (bytes) => writeAll(fd!, bytes),
    commit() {
      fs.fsyncSync(fd!);
      close();
      fs.renameSync(tmp, target);
      fsyncDir(path.dirname(target));
    },
    abort() {
      try {
        close();
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    },
  };
}

/**
 * Writes `target` from `fill`, which writes its bytes in order through `write` (one tensor at a
 * time, say). If `fill` throws, the target is untouched and the error is rethrown.
 */
export function writeStreamAtomic(target: string, fill: (write: ByteWriter) => void): void {
  let file;
  try {
    file = begin(target);
    fill(file.write);
    file.commit();
  } catch (err) {
    file?.abort();
    throw writeError(target, err);
  }
}

/** As writeStreamAtomic, for a `fill` that waits between writes (a download). */
export async function writeStreamAtomicAsync(target: string, fill: (write: ByteWriter) => Promise<void>): Promise<void> {
  let file;
  try {
    file = begin(target);
    await fill(file.write);
    file.commit();
  } catch (err) {
    file?.abort();
    throw writeError(target, err);
  }
}

/** Writes text (UTF-8) or bytes to `file` atomically, creating its folder if needed. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
  } catch (err) {
    throw writeError(file, err);
  }
  writeStreamAtomic(file, (write) => write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
}

/** Writes `value` as indented JSON (two spaces, a final newline), atomically. */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Builds the folder `dir` by letting `fill` write into a temporary folder, then renames it into
 * place. An existing `dir` is replaced only after the new one is complete. On any error the
 * temporary folder is removed and the error rethrown; `dir` is untouched.
 */
export async function writeDirAtomic(dir: string, fill: (tmpDir: string) => void | Promise<void>): Promise<void> {
  const tmp = tmpName(dir);
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    await fill(tmp);
    fsyncDir(tmp);
    if (fs.existsSync(dir)) {
      const old = `${dir}.old-${process.pid}`;
      fs.renameSync(dir, old);
      fs.renameSync(tmp, dir);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, dir);
    }
    fsyncDir(path.dirname(dir));
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw writeError(dir, err);
  }
}

/** Removes leftovers of interrupted atomic writes (`*.tmp-<pid>`, `*.old-<pid>`) of dead processes in `dir`. */
export function removeStaleTemporaries(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const name of fs.readdirSync(dir)) {
    const m = /\.(tmp|old)-(\d+)$/.exec(name);
    if (m && !isAlive(Number(m[2]))) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/** True when a process with this id exists on this machine. */
export function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
