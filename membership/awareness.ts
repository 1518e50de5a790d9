// Lifeguard local health awareness: a score that stretches our own probe timeouts while we look unhealthy ourselves.

export class Awareness {
  private score = 0;

  /** `max` is memberlist's AwarenessMaxMultiplier (8): the score stays in [0, max - 1]. */
  constructor(private readonly max = 8) {}

  /** +1 for missed nacks or a refutation, -1 for a clean probe. */
  apply(delta: number): void {
    this.score = Math.min(this.max - 1, Math.max(0, this.score + delta));
  }

  get health(): number {
    return this.score;
  }

  scale(ms: number): number {
    return ms * (this.score + 1);
  }
}
