// Hybrid logical clocks: timestamps that order writes across agents for last-writer-wins merges.

export interface Hlc {
  /** Wall-clock milliseconds. */
  wall: number;
  /** Tie-breaker within one millisecond. */
  logical: number;
  /** The writer, so two clocks are never equal. */
  node: string;
}

export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wall - b.wall || a.logical - b.logical || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
}

export class HybridClock {
  private last: Hlc;

  constructor(readonly node: string, private readonly now: () => number = Date.now) {
    this.last = { wall: 0, logical: 0, node };
  }

  /** A timestamp greater than every one this clock has issued or seen. */
  tick(): Hlc {
    const wall = Math.max(this.now(), this.last.wall);
    const logical = wall === this.last.wall ? this.last.logical + 1 : 0;
    this.last = { wall, logical, node: this.node };
    return this.last;
  }

  /** Moves the clock past a timestamp seen from elsewhere (a restored or replicated record). */
  observe(seen: Hlc): void {
    if (seen.wall > this.last.wall || (seen.wall === this.last.wall && seen.logical > this.last.logical)) {
      this.last = { wall: seen.wall, logical: seen.logical, node: this.node };
    }
  }
}
