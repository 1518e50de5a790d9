// Runs an async job one at a time: calls made while it runs fold into one more run, so no request is lost.

export class CoalescingRunner {
  private running?: Promise<void>;
  private again = false;

  /** `stopped`: once true, no further run starts. */
  constructor(private readonly job: () => Promise<void>, private readonly stopped: () => boolean) {}

  /** Resolves after a run that began after this call. */
  run(): Promise<void> {
    this.again = true;
    if (!this.running) {
      this.running = (async () => {
        while (this.again && !this.stopped()) {
          this.again = false;
          await this.job();
        }
      })().finally(() => {
        this.running = undefined;
        if (this.again && !this.stopped()) void this.run();
      });
    }
    return this.running;
  }

  /** The run in progress, if any (to wait for before tearing down). */
  get current(): Promise<void> | undefined {
    return this.running;
  }
}
