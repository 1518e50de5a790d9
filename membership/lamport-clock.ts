// Serf's Lamport clocks (u64): membership intents, user events and queries each keep one.

export class LamportClock {
  private t = 1n;
  time(): bigint { return this.t; }
  increment(): bigint { return ++this.t; }
  /** Ignores times absurdly far ahead (a forged 2^64 would otherwise wedge every later encode). */
  witness(v: bigint): void { if (v >= this.t && v - this.t < 1n << 32n) this.t = v + 1n; }
}

/** A message's LTime field as a bigint (msgpack may give a number or a bigint). */
export function ltimeOf(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v >= 0n ? v : undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  return undefined;
}
