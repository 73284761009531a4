import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { acquireWorkDirLock, defaultWorkDir, LOCK_FILE } from '../../src/train/work-dir.ts';
import { tmpDir } from '../tmp-dir.ts';

/** The pid of a process that has exited (so it is certainly not alive). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

test('the work folder is work_dirs/<config name>', () => {
  assert.equal(defaultWorkDir('configs/tiny_demo.ts', '/x'), '/x/work_dirs/tiny_demo');
  assert.equal(defaultWorkDir('/a/b/my_cfg.yaml', '/x'), '/x/work_dirs/my_cfg');
});

test('a second run into a locked work folder is refused; release frees it', () => {
  const work = tmpDir();
  const release = acquireWorkDirLock(work);
  // Another live process holds it: simulate by writing our parent's pid, which is alive.
  release();
  fs.writeFileSync(path.join(work, LOCK_FILE), JSON.stringify({ pid: process.ppid, host: os.hostname(), started: 'then' }));
  assert.throws(() => acquireWorkDirLock(work), new RegExp(`in use by another xtuner train \\(pid ${process.ppid}`));
  fs.rmSync(path.join(work, LOCK_FILE));
  const again = acquireWorkDirLock(work);
  assert.equal(JSON.parse(fs.readFileSync(path.join(work, LOCK_FILE), 'utf8')).pid, process.pid);
  again();
  assert.equal(fs.existsSync(path.join(work, LOCK_FILE)), false);
});

test('a stale lock from a dead process is taken over, and its leftovers cleared', () => {
  const work = tmpDir();
  const dead = deadPid();
  fs.writeFileSync(path.join(work, LOCK_FILE), JSON.stringify({ pid: dead, host: os.hostname(), started: 'long ago' }));
  fs.mkdirSync(path.join(work, `iter_4.tmp-${dead}`));
  const release = acquireWorkDirLock(work);
  assert.equal(JSON.parse(fs.readFileSync(path.join(work, LOCK_FILE), 'utf8')).pid, process.pid);
  assert.equal(fs.existsSync(path.join(work, `iter_4.tmp-${dead}`)), false);
  release();
});
