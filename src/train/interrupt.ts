// Ctrl-C during training: the first SIGINT asks the loop to finish its step, save and stop; a
// second one quits at once (the last saved checkpoint stays as it was). The loop must yield to the
// event loop between steps (`await yieldToEvents()`), or the signal is never delivered.

export class InterruptFlag {
  requested = false;
  private readonly onSignal = (): void => {
    if (this.requested) {
      process.stderr.write('\nSecond Ctrl-C: quitting without saving.\n');
      process.exit(130);
    }
    this.requested = true;
    this.notice();
  };

  constructor(private readonly notice: () => void = () => {}) {}

  install(): this {
    process.on('SIGINT', this.onSignal);
    return this;
  }

  uninstall(): void {
    process.off('SIGINT', this.onSignal);
  }
}

/** Lets pending signals and I/O callbacks run between training steps. */
export function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
