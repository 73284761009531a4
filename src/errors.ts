// User-facing errors. Anything thrown as an XtunerError is bad input or a missing resource, and the
// CLI prints its message as one line (no stack trace). Any other exception is a bug, printed with
// its stack only when XTUNER_DEBUG=1.

export class XtunerError extends Error {
  /** What the user can do about it, printed after the message. */
  readonly hint: string | undefined;

  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'XtunerError';
    this.hint = options.hint;
  }
}

/** Throws an XtunerError when `cond` is false. */
export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new XtunerError(typeof message === 'string' ? message : message());
}
