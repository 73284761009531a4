// Atomic writes for everything the trainer leaves on disk: a file or a whole folder is written
// under a temporary name beside its target and renamed into place only when complete, so a crash
// or a full disk never leaves a half-written checkpoint, log or config where a reader looks.
// Not a general file-system layer: only the operations the work folder needs.

import fs from 'node:fs';
import path from 'node:path';

/** Where the bytes actually go; tests pass one that fails part-way, as a full disk does. */
export interface FileSink {
  writeFile(file: string, data: string | Uint8Array): void;
}

export const diskSink: FileSink = {
  writeFile(file, data) {
    const fd = fs.openSync(file, 'w');
    try {
      fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
};

function tmpName(target: string): string {
  return `${target}.tmp-${process.pid}`;
}

/** Writes `data` to `file` through `file.tmp-<pid>` and a rename. */
export function writeFileAtomic(file: string, data: string | Uint8Array, sink: FileSink = diskSink): void {
  const tmp = tmpName(file);
  try {
    sink.writeFile(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Builds the folder `dir` by letting `fill` write into a temporary folder, then renames it into
 * place. An existing `dir` is replaced only after the new one is complete. On any error the
 * temporary folder is removed and the error rethrown; `dir` is untouched.
 */
export async function writeDirAtomic(dir: string, fill: (tmpDir: string) => void | Promise<void>): Promise<void> {
  const tmp = tmpName(dir);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    await fill(tmp);
    if (fs.existsSync(dir)) {
      const old = `${dir}.old-${process.pid}`;
      fs.renameSync(dir, old);
      fs.renameSync(tmp, dir);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, dir);
    }
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Appends one line to a log file; a line is small, so append is all-or-nothing in practice. */
export function appendLine(file: string, line: string): void {
  fs.appendFileSync(file, line.endsWith('\n') ? line : `${line}\n`);
}

/** Removes leftovers of interrupted atomic writes (`*.tmp-<pid>`, `*.old-<pid>`) in `dir`. */
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
