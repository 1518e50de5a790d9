// Golden metrics per edge over the last minute (requests/s, success rate, p50/p99, bytes, connections, denials), kept
// in six 10-second slots, for the topology view and `nodemesh top` on pools with no Prometheus.

import { NodemeshError } from '../../lib/errors.js';

export type Direction = 'inbound' | 'outbound';

const SLOT_MS = 10_000;
const SLOTS = 6;
/** Latency buckets' upper bounds in ms: doubling from 0.5 ms; the last is open. */
const BOUNDS_MS = [0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, Number.POSITIVE_INFINITY];
/** Edges kept at most: a flood of distinct labels (which the bounded label values already prevent) cannot grow this. */
const MAX_EDGES = 4096;

export interface EdgeKey {
  direction: Direction;
  source: string;
  destination: string;
  /** Where requests went (a split's service) and the subset; empty for L4 edges. */
  service: string;
  subset: string;
}

/** One edge's last minute, as the API and the UI show it. */
export interface EdgeSummary extends EdgeKey {
  /** The window these figures cover, in seconds (less than 60 s just after start). */
  windowSeconds: number;
  requests: number;
  requestsPerSecond: number;
  /** Requests answered below 500, over all requests; null without requests. */
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  connections: number;
  openConnections: number;
  bytesTx: number;
  bytesRx: number;
  denied: number;
  /** The denials by reason (nodemesh_proxy_denied_total's reasons). */
  deniedBy: Record<string, number>;
}

interface Slot {
  start: number;
  requests: number;
  failures: number;
  latency: number[];
  connections: number;
  bytesTx: number;
  bytesRx: number;
  denied: number;
  deniedBy: Map<string, number>;
}

const emptySlot = (start: number): Slot => ({ start, requests: 0, failures: 0, latency: new Array<number>(BOUNDS_MS.length).fill(0), connections: 0, bytesTx: 0, bytesRx: 0, denied: 0, deniedBy: new Map() });

class EdgeWindow {
  readonly slots: Slot[] = [];
  open = 0;
  lastSeen = 0;

  constructor(readonly key: EdgeKey) {}

  slot(now: number): Slot {
    const start = now - (now % SLOT_MS);
    let s = this.slots[this.slots.length - 1];
    if (!s || s.start !== start) {
      s = emptySlot(start);
      this.slots.push(s);
      while (this.slots.length > SLOTS || (this.slots.length && this.slots[0].start <= start - SLOTS * SLOT_MS)) this.slots.shift();
    }
    this.lastSeen = now;
    return s;
  }
}

function quantile(counts: number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    if (seen + counts[i] >= rank) {
      const lo = i === 0 ? 0 : BOUNDS_MS[i - 1];
      const hi = Number.isFinite(BOUNDS_MS[i]) ? BOUNDS_MS[i] : lo * 2;
      // Linear within the bucket, as Prometheus's histogram_quantile.
      return lo + (hi - lo) * ((rank - seen) / counts[i]);
    }
    seen += counts[i];
  }
  return BOUNDS_MS[BOUNDS_MS.length - 2];
}

export class EdgeStats {
  private readonly edges = new Map<string, EdgeWindow>();

  constructor(private readonly now: () => number = Date.now) {}

  private edge(k: EdgeKey): EdgeWindow {
    const id = `${k.direction}\u0000${k.source}\u0000${k.destination}\u0000${k.service}\u0000${k.subset}`;
    let e = this.edges.get(id);
    if (!e) {
      if (this.edges.size >= MAX_EDGES) this.evict();
      e = new EdgeWindow({ ...k });
      this.edges.set(id, e);
    }
    return e;
  }

  /** Drops edges idle for the whole window with nothing open; else the oldest with nothing open (open ones stay). */
  private evict(): void {
    const cutoff = this.now() - SLOTS * SLOT_MS;
    for (const [id, e] of this.edges) if (e.open === 0 && e.lastSeen < cutoff) this.edges.delete(id);
    if (this.edges.size < MAX_EDGES) return;
    for (const [id, e] of this.edges) {
      if (e.open === 0) return void this.edges.delete(id);
    }
  }

  request(k: EdgeKey, status: number, seconds: number | undefined): void {
    const s = this.edge(k).slot(this.now());
    s.requests++;
    if (status >= 500) s.failures++;
    if (seconds !== undefined) {
      const ms = seconds * 1000;
      s.latency[BOUNDS_MS.findIndex((b) => ms <= b)]++;
    }
  }

  connectionOpened(k: EdgeKey): void {
    const e = this.edge(k);
    e.open++;
    e.slot(this.now()).connections++;
  }

  connectionClosed(k: EdgeKey, tx: number, rx: number): void {
    const e = this.edge(k);
    e.open = Math.max(0, e.open - 1);
    const s = e.slot(this.now());
    s.bytesTx += tx;
    s.bytesRx += rx;
  }

  denied(k: EdgeKey, reason: string): void {
    const s = this.edge(k).slot(this.now());
    s.denied++;
    // Reasons are the bounded set of DenyReason (and the per-source limits).
    s.deniedBy.set(reason, (s.deniedBy.get(reason) ?? 0) + 1);
  }

  /** Every edge with something in the window or a connection open. */
  summaries(): EdgeSummary[] {
    const now = this.now();
    const from = now - (now % SLOT_MS) - (SLOTS - 1) * SLOT_MS;
    const out: EdgeSummary[] = [];
    for (const e of this.edges.values()) {
      const live = e.slots.filter((s) => s.start >= from);
      if (!live.length && e.open === 0) continue;
      const sum = (f: (s: Slot) => number) => live.reduce((a, s) => a + f(s), 0);
      const latency = BOUNDS_MS.map((_, i) => sum((s) => s.latency[i]));
      const requests = sum((s) => s.requests);
      const windowSeconds = Math.max(1, Math.min(SLOTS * SLOT_MS, now - (live[0]?.start ?? now)) / 1000);
      out.push({
        ...e.key, windowSeconds, requests, requestsPerSecond: requests / windowSeconds,
        successRate: requests ? (requests - sum((s) => s.failures)) / requests : null,
        p50Ms: quantile(latency, 0.5), p99Ms: quantile(latency, 0.99),
        connections: sum((s) => s.connections), openConnections: e.open,
        bytesTx: sum((s) => s.bytesTx), bytesRx: sum((s) => s.bytesRx), denied: sum((s) => s.denied),
        deniedBy: live.reduce<Record<string, number>>((acc, s) => {
          for (const [r, n] of s.deniedBy) acc[r] = (acc[r] ?? 0) + n;
          return acc;
        }, {}),
      });
    }
    return out;
  }
}

const NAME = /^[A-Za-z0-9._-]{0,253}$/;
const bad = (msg: string) => new NodemeshError('PEER_ANSWER_INVALID', msg, 502);
const REASON = /^[a-z_]{1,40}$/;

function reasons(v: unknown, i: number): Record<string, number> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length > 32) throw bad(`edge ${i}: deniedBy is a map of at most 32 reasons`);
  // No prototype: a reason named __proto__ or constructor is a key like any other.
  const out = Object.create(null) as Record<string, number>;
  for (const [r, n] of Object.entries(v)) {
    if (!REASON.test(r) || typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw bad(`edge ${i}: deniedBy ${JSON.stringify(r)} is not a reason with a count`);
    out[r] = n;
  }
  return out;
}

/**
 * A peer's edges as it sent them, checked as strictly as our own are made: known directions, service-name strings,
 * finite non-negative numbers, rates in [0, 1], at most MAX_EDGES. Throws on anything else.
 */
export function readEdgeSummaries(v: unknown): EdgeSummary[] {
  if (!Array.isArray(v) || v.length > MAX_EDGES) throw bad(`edges must be an array of at most ${MAX_EDGES}`);
  return v.map((raw, i) => {
    const e = raw as Record<string, unknown>;
    if (typeof e !== 'object' || e === null) throw bad(`edge ${i}: not an object`);
    const name = (k: string) => {
      const s = e[k];
      if (typeof s !== 'string' || !NAME.test(s)) throw bad(`edge ${i}: ${k} is not a service name`);
      return s;
    };
    const num = (k: string, nullable = false) => {
      const n = e[k];
      if (nullable && n === null) return null;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw bad(`edge ${i}: ${k} is not a finite number ≥ 0`);
      return n;
    };
    if (e.direction !== 'inbound' && e.direction !== 'outbound') throw bad(`edge ${i}: direction is inbound or outbound`);
    const successRate = num('successRate', true);
    if (successRate !== null && successRate > 1) throw bad(`edge ${i}: successRate is at most 1`);
    return {
      direction: e.direction, source: name('source'), destination: name('destination'), service: name('service'), subset: name('subset'),
      windowSeconds: num('windowSeconds')!, requests: num('requests')!, requestsPerSecond: num('requestsPerSecond')!, successRate,
      p50Ms: num('p50Ms', true), p99Ms: num('p99Ms', true), connections: num('connections')!, openConnections: num('openConnections')!,
      bytesTx: num('bytesTx')!, bytesRx: num('bytesRx')!, denied: num('denied')!, deniedBy: reasons(e.deniedBy, i),
    };
  });
}
