// Wake-ups for blocking queries: waiters park until the catalog changes, time runs out, or the feed closes.

export class ChangeFeed {
  private waiters = new Set<() => void>();
  private subscribers = new Set<() => void>();
  private closed = false;

  /** Resolves on the next change, after `timeoutMs`, at close, or when `signal` aborts — whichever comes first. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  notify(): void {
    for (const w of [...this.waiters]) w();
    for (const s of [...this.subscribers]) s();
  }

  /** Calls `fn` after every change until the returned function is called. */
  subscribe(fn: () => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** Releases every parked waiter now and from then on (used at shutdown). */
  close(): void {
    this.closed = true;
    for (const w of [...this.waiters]) w();
    this.subscribers.clear();
  }

  get parked(): number {
    return this.waiters.size;
  }
}
