// One blocking query kept open against Consul: re-asked on every answer, backing off while Consul is unreachable.

import type { ConsulHttp } from './consul-http.js';

export interface WatchOptions<T> {
  path: string;
  query?: Record<string, string>;
  /** Called with each answer whose index moved (and the first); may throw, the watch carries on. */
  onData(body: T, index: number): void;
  /** Called once per failed call; the watch retries with backoff (1 s doubling to 30 s). */
  onError(err: Error): void;
  /** Seconds a blocking call may wait for a change (Consul caps it at 600). */
  waitSeconds?: number;
}

export class BlockingWatch<T> {
  private index = 0;
  private stopped = false;
  private readonly abort = new AbortController();
  private timer?: NodeJS.Timeout;
  private wake?: () => void;
  /** Resolves after the first successful answer. */
  readonly first: Promise<void>;
  private resolveFirst!: () => void;

  constructor(private readonly http: ConsulHttp, private readonly o: WatchOptions<T>) {
    this.first = new Promise((r) => { this.resolveFirst = r; });
    void this.loop();
  }

  private async loop(): Promise<void> {
    let backoff = 1000;
    while (!this.stopped) {
      try {
        const r = await this.http.get<T>(this.o.path, this.o.query, { index: this.index, waitSeconds: this.o.waitSeconds ?? 300 }, this.abort.signal);
        if (this.stopped) return;
        backoff = 1000;
        // An index that goes backwards (Consul restarted, snapshot restored) means start over from it.
        const moved = r.index !== this.index || this.index === 0;
        this.index = r.index > 0 ? r.index : 1;
        if (moved) {
          try {
            this.o.onData(r.body, r.index);
          } catch (e) {
            this.o.onError(e as Error);
          }
        }
        this.resolveFirst();
      } catch (e) {
        if (this.stopped) return;
        this.o.onError(e as Error);
        // After a failure the next answer is taken whatever its index (Consul may have lost its state).
        this.index = 0;
        await new Promise<void>((r) => {
          this.wake = r;
          this.timer = setTimeout(r, backoff);
          this.timer.unref();
        });
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }

  /** Retry now instead of waiting out the backoff (Consul is known to be back). */
  poke(): void {
    clearTimeout(this.timer);
    this.wake?.();
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.poke();
  }
}
