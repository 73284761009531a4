// Test helper, run as a child process: `node --import tsx run-command.ts MODULE ARGS...` runs the
// command exported by MODULE with ARGS; a thrown error's message goes to stderr, exit code 1.
// (In-process runs cannot capture stdout: the test runner reports through it.)

import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [modulePath, ...argv] = process.argv.slice(2);
const { command } = (await import(pathToFileURL(path.resolve(modulePath!)).href)) as {
  command: { run(argv: string[]): Promise<void> };
};
try {
  await command.run(argv);
} catch (e) {
  process.stderr.write(`${(e as Error).name}: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
