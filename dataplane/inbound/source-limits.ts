// Per-source limits on the public listeners: how many TLS handshakes one peer address may have pending, how many
// connections it may hold, and how many handshakes may be pending in all — so one host cannot exhaust the agent.

/** Handshakes one source address may have in progress at once (a peer agent needs a few; a flood needs many). */
export const MAX_PENDING_PER_SOURCE = 64;
/** Handshakes in progress across every source. */
export const MAX_PENDING_TOTAL = 1024;
/** Open connections from one source address (pooled tunnels need one per identity pair; Consul's proxy one per stream). */
export const MAX_CONNECTIONS_PER_SOURCE = 4096;

interface Count { pending: number; open: number }

export type LimitVerdict = 'ok' | 'pending_per_source' | 'pending_total' | 'connections_per_source';

/** Shared by every public listener of an agent. */
export class SourceLimits {
  private readonly bySource = new Map<string, Count>();
  private pendingTotal = 0;

  constructor(
    /** Addresses of the pool's agents: the overall cap does not shut them out (a flood from a few hosts could fill it). */
    private readonly isPeer: (source: string) => boolean = () => false,
    private readonly limits = { perSourcePending: MAX_PENDING_PER_SOURCE, totalPending: MAX_PENDING_TOTAL, perSourceOpen: MAX_CONNECTIONS_PER_SOURCE },
  ) {}

  /** A new TCP connection from `source`: admitted (counted as pending) or the limit it hit. */
  admit(source: string): LimitVerdict {
    const c = this.bySource.get(source) ?? { pending: 0, open: 0 };
    if (c.open + c.pending >= this.limits.perSourceOpen) return 'connections_per_source';
    if (c.pending >= this.limits.perSourcePending) return 'pending_per_source';
    if (this.pendingTotal >= this.limits.totalPending && !this.isPeer(source)) return 'pending_total';
    c.pending++;
    this.pendingTotal++;
    this.bySource.set(source, c);
    return 'ok';
  }

  /** The admitted connection finished its handshake. */
  secured(source: string): void {
    const c = this.bySource.get(source);
    if (!c || c.pending === 0) return;
    c.pending--;
    this.pendingTotal--;
    c.open++;
  }

  /** The admitted connection closed; `wasSecured` says which count it was in. */
  closed(source: string, wasSecured: boolean): void {
    const c = this.bySource.get(source);
    if (!c) return;
    if (wasSecured) c.open = Math.max(0, c.open - 1);
    else if (c.pending > 0) {
      c.pending--;
      this.pendingTotal--;
    }
    if (c.open === 0 && c.pending === 0) this.bySource.delete(source);
  }

  /** Sources being tracked (for tests and metrics). */
  get sources(): number {
    return this.bySource.size;
  }

  /** What one source holds now (zeros once it holds nothing: its entry is gone). */
  of(source: string): { pending: number; open: number } {
    const c = this.bySource.get(source);
    return { pending: c?.pending ?? 0, open: c?.open ?? 0 };
  }
}
