// What a CLI command is (Contract 4), and the flag parsing every command shares: node:util's
// parseArgs, with bad flags turned into one-line usage errors that suggest the flag meant.
// Command files live in src/cli/commands/<name>.ts and export `const command: Command`; keep
// their top-level imports light (import the engine inside `run`) so `xtuner --help` stays fast.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { XtunerError } from '../errors.ts';
import { didYouMean } from '../config/index.ts';

export interface Command {
  /** The word after `xtuner`, kebab-case: `list-cfg`. */
  name: string;
  /** One line for `xtuner --help`. */
  summary: string;
  /**
   * The help body printed under the summary by `xtuner CMD --help`: the synopsis on its first line
   * (`xtuner list-cfg [-p PATTERN]`), then the arguments and options, one per line.
   */
  usage: string;
  /**
   * Runs with the words after the command name; resolves to the exit code, or nothing for 0.
   * Bad input: throw XtunerError (or UsageError).
   */
  run(argv: string[]): Promise<void | number>;
}

/** The exit code of a run stopped by Ctrl-C (SIGINT) after saving, as a shell expects: 128 + 2. */
export const EXIT_INTERRUPTED = 130;

/** Wrong flags or arguments: printed with a pointer to the command's help, exit code 2. */
export class UsageError extends XtunerError {
  constructor(commandName: string, message: string) {
    super(`${commandName}: ${message}`, { hint: `see \`xtuner ${commandName} --help\`` });
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>;

export interface PositionalSpec {
  /** Names for messages, in order: ['NAME', 'DIR']. */
  names?: readonly string[];
  min?: number;
  /** Default: the number of names; Infinity for any number. */
  max?: number;
}

/**
 * Parses `argv` strictly against `options`. Unknown flags, missing values and a wrong number of
 * positionals become UsageErrors naming the flag (with a did-you-mean) or the missing argument.
 */
export function parseCommandArgs<O extends Options>(
  command: Pick<Command, 'name'>,
  argv: string[],
  options: O,
  positionals: PositionalSpec = {},
): Parsed<O> {
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw toUsageError(command.name, err, options);
  }
  const names = positionals.names ?? [];
  const min = positionals.min ?? names.length;
  const max = positionals.max ?? names.length;
  const count = parsed.positionals.length;
  if (count < min) {
    throw new UsageError(command.name, `missing ${names.slice(count, min).join(' ') || `${min - count} argument(s)`}`);
  }
  if (count > max) {
    throw new UsageError(command.name, `unexpected argument "${parsed.positionals[max]}"`);
  }
  return parsed;
}

function toUsageError(commandName: string, err: unknown, options: Options): Error {
  const e = err as { code?: string; message?: string };
  if (typeof e.code !== 'string' || !e.code.startsWith('ERR_PARSE_ARGS')) return err as Error;
  const message = String(e.message).split('\n')[0];
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /'(-[^']*)'/.exec(message)?.[1] ?? message;
    const known = Object.entries(options).flatMap(([long, o]) => [`--${long}`, ...(o.short ? [`-${o.short}`] : [])]);
    return new UsageError(commandName, `unknown option ${flag}${didYouMean(flag, known)}`);
  }
  // "Option '-p, --pattern <value>' argument missing" and the like: Node's words are clear.
  return new UsageError(commandName, message.replace(/\.$/, ''));
}
