// Lifeguard suspicion: a timer that starts long and shrinks as other members independently confirm the suspicion.

/**
 * The time left before a suspect is declared dead, given `n` independent confirmations out of the
 * `k` wanted: `max` with none, falling on a log curve to `min` at `k`, less what has already elapsed.
 */
export function remainingSuspicionMs(n: number, k: number, elapsedMs: number, minMs: number, maxMs: number): number {
  const frac = k < 1 ? 1 : Math.log(n + 1) / Math.log(k + 1);
  const timeout = Math.max(minMs, Math.floor(maxMs - frac * (maxMs - minMs)));
  return timeout - elapsedMs;
}

/** The base (minimum) suspicion timeout: SuspicionMult × max(1, log10(members)) × probe interval. */
export function suspicionTimeoutMs(mult: number, members: number, probeIntervalMs: number): number {
  return Math.floor(mult * Math.max(1, Math.log10(Math.max(1, members))) * probeIntervalMs);
}

export class Suspicion {
  private readonly confirmations = new Set<string>();
  private readonly started = Date.now();
  private timer: NodeJS.Timeout;
  private fired = false;

  /**
   * `from` started the suspicion and does not count as a confirmation. With `k` < 1 there is nobody
   * to wait for and the timer runs for `minMs`; otherwise it starts at `maxMs`.
   */
  constructor(from: string, private readonly k: number, private readonly minMs: number, private readonly maxMs: number, private readonly onTimeout: (confirmations: number) => void) {
    this.confirmations.add(from);
    this.timer = this.arm(k < 1 ? minMs : maxMs);
  }

  private arm(ms: number): NodeJS.Timeout {
    const t = setTimeout(() => { this.fired = true; this.onTimeout(this.confirmations.size - 1); }, Math.max(0, ms));
    t.unref();
    return t;
  }

  /** Counts an independent confirmation; true when it was new (and should be gossiped on). */
  confirm(from: string): boolean {
    if (this.fired || this.confirmations.size - 1 >= this.k || this.confirmations.has(from)) return false;
    this.confirmations.add(from);
    clearTimeout(this.timer);
    const left = remainingSuspicionMs(this.confirmations.size - 1, this.k, Date.now() - this.started, this.minMs, this.maxMs);
    this.timer = this.arm(left);
    return true;
  }

  cancel(): void {
    clearTimeout(this.timer);
  }
}
