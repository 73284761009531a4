// The `xtuner` dispatcher: `xtuner CMD ...`, `xtuner --help`, `xtuner help CMD`, `xtuner CMD --help`,
// `xtuner --version`. The exit code is the one a command's run resolves to (0 when it resolves to
// nothing; `xtuner train` stopped by Ctrl-C gives 130). Errors end here: an XtunerError prints as
// `error: <message>` (and its hint) with exit code 1 (2 for usage errors); anything else is a bug,
// printed with its message and, under XTUNER_DEBUG=1, its stack.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { XtunerError } from '../errors.ts';
import { didYouMean } from '../config/index.ts';
import { EXIT_INTERRUPTED, UsageError, type Command } from './command.ts';
import { commands, type CommandEntry } from './commands/index.ts';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
export { EXIT_INTERRUPTED };

const HELP_FLAGS = new Set(['--help', '-h']);

function version(): string {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  return (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
}

function findEntry(name: string): CommandEntry {
  const entry = commands.find((c) => c.name === name);
  if (entry !== undefined) return entry;
  throw new UsageErrorTop(`unknown command "${name}"${didYouMean(name, commands.map((c) => c.name))}`);
}

/** A usage error before any command is chosen. */
class UsageErrorTop extends XtunerError {
  constructor(message: string) {
    super(message, { hint: 'see `xtuner --help`' });
  }
}

async function loadCommand(entry: CommandEntry): Promise<Command> {
  const { command } = await entry.load();
  return command;
}

function commandHelp(command: Command): string {
  return `${command.summary}\n\nusage: ${command.usage}\n`;
}

async function topHelp(): Promise<string> {
  const loaded = await Promise.all(
    commands.map(async (entry) => {
      try {
        return { name: entry.name, summary: (await loadCommand(entry)).summary };
      } catch (err) {
        return { name: entry.name, summary: `(cannot load: ${(err as Error).message.split('\n')[0]})` };
      }
    }),
  );
  const width = Math.max(...loaded.map((c) => c.name.length)) + 2;
  return [
    'xtuner: fine-tune LLMs from Node.js (XTuner\'s configs and commands)',
    '',
    'usage: xtuner COMMAND [ARGS...]',
    '',
    'Commands:',
    ...loaded.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Run `xtuner COMMAND --help` (or `xtuner help COMMAND`) for a command\'s arguments.',
    'Set XTUNER_DEBUG=1 to see stack traces.',
    '',
  ].join('\n');
}

/** Runs one invocation; resolves to the exit code. Writes to stdout/stderr, never exits. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const [first, ...rest] = argv;
    if (first === undefined || HELP_FLAGS.has(first)) {
      process.stdout.write(await topHelp());
      return EXIT_OK;
    }
    if (first === '--version' || first === '-v') {
      process.stdout.write(`${version()}\n`);
      return EXIT_OK;
    }
    if (first === 'help') {
      if (rest.length === 0) {
        process.stdout.write(await topHelp());
        return EXIT_OK;
      }
      process.stdout.write(commandHelp(await loadCommand(findEntry(rest[0]))));
      return EXIT_OK;
    }
    if (first.startsWith('-')) throw new UsageErrorTop(`unknown option ${first}; a command comes first`);
    const command = await loadCommand(findEntry(first));
    // `--` ends the flags: a `-h` after it is an argument, not a request for help.
    const end = rest.indexOf('--');
    if ((end === -1 ? rest : rest.slice(0, end)).some((a) => HELP_FLAGS.has(a))) {
      process.stdout.write(commandHelp(command));
      return EXIT_OK;
    }
    return (await command.run([...rest])) ?? EXIT_OK;
  } catch (err) {
    return reportError(err);
  }
}

/** Prints an error the way the CLI does; returns its exit code. */
export function reportError(err: unknown): number {
  const debug = process.env.XTUNER_DEBUG === '1';
  if (err instanceof XtunerError) {
    process.stderr.write(`error: ${err.message}\n`);
    if (err.hint !== undefined) process.stderr.write(`hint: ${err.hint}\n`);
    if (debug && err.stack !== undefined) process.stderr.write(`${err.stack}\n`);
    return err instanceof UsageError || err instanceof UsageErrorTop ? EXIT_USAGE : EXIT_ERROR;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (debug) {
    process.stderr.write(`error: ${err instanceof Error && err.stack !== undefined ? err.stack : message}\n`);
  } else {
    process.stderr.write(`error: ${message} (set XTUNER_DEBUG=1 for the stack)\n`);
  }
  return EXIT_ERROR;
}

/** Entry point of the binary: runs `main` and sets the exit code. */
export async function runCli(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  // `xtuner list-cfg | head` closes the pipe early: stop quietly rather than crash on EPIPE.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK);
    throw err;
  });
  process.exitCode = await main(argv);
}

function isEntryPoint(): boolean {
  if (process.argv[1] === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) await runCli();
