// A replicated set of records, last writer wins by hybrid logical clock, tombstones kept, durable on disk; the base of the intention and config-entry stores.

import { ChangeFeed } from '../lib/change-feed.js';
import { NodemeshError } from '../lib/errors.js';
import type { Hlc } from './hlc.js';
import { HybridClock, compareHlc } from './hlc.js';
import { StateFile } from '../lib/state-file.js';

/** The record as its writer signed it (`body` is the record's JSON; `by` the signer's certificate fingerprint). */
export interface RecordSeal { body: string; by: string; sig: string }

/** One record: the latest write of a value (under `field`), or its tombstone; `sig` as its writer signed it. */
export type LwwRecord<F extends string, T> = { id: string; hlc: Hlc; deleted: boolean; sig?: RecordSeal } & { [K in F]?: T };

interface Persisted<R> { format: 1; index: number; records: R[] }

/** A peer's clock this far ahead of ours would win every later merge and drag our clock along: refused. */
const MAX_CLOCK_AHEAD_MS = 60_000;
/** A value larger than any API write may be (the HTTP API's 1 MiB body limit) is refused. */
const MAX_VALUE_BYTES = 1 << 20;
/** Refused records remembered per store (oldest dropped). */
const MAX_QUARANTINED = 256;

/** A record refused (from a peer, or found invalid in the file at load): never applied, never persisted. */
export interface QuarantinedRecord { id: string; reason: string; from: string; at: number; phase: 'merge' | 'load'; count: number }
/** Told once per refused record id and reason: `set` names the store ('intentions', 'config-entries'); `from` is its writer per hlc.node. */
export type RefusedRecordHandler = (set: string, id: string, reason: string, from: string, phase: 'merge' | 'load') => void;

export abstract class LwwRecordStore<F extends string, T extends { ModifyIndex: number }> {
  readonly feed = new ChangeFeed();
  protected readonly records = new Map<string, LwwRecord<F, T>>();
  /** Local writes not yet handed to gossip (latest per id). */
  private readonly unsent = new Map<string, LwwRecord<F, T>>();
  /** Bumped on every change to `records`, for caches of derived views. */
  protected version = 0;
  private readonly clock: HybridClock;
  private readonly file: StateFile<Persisted<LwwRecord<F, T>>>;
  private lastIndex = 1;
  /** Signs local writes (a policy writer); without it, local records stay unsigned and peers refuse them. */
  sealer?: (body: string) => RecordSeal;
  /** Refused records by id and reason, oldest first. */
  private readonly quarantine = new Map<string, QuarantinedRecord & { told: boolean }>();
  private refusedHandler?: RefusedRecordHandler;
  /** The store's name in logs and metrics ('intentions', 'config-entries'). */
  readonly setName: string;

  constructor(path: string, node: string, protected readonly field: F, private readonly label: string) {
    this.clock = new HybridClock(node);
    this.setName = label.replace(/\s+/g, '-');
    this.file = new StateFile(path, () => ({ format: 1, index: this.lastIndex, records: [...this.records.values()] }));
  }

  async load(): Promise<void> {
    const saved = await this.file.load();
    if (!saved) return;
    if (saved.format !== 1) throw new NodemeshError('STATE_FORMAT', `${this.label} file ${this.file.path} has unknown format ${String(saved.format)}`);
    if (Number.isSafeInteger(saved.index)) this.lastIndex = Math.max(this.lastIndex, saved.index);
    // Checked as a peer's record is: one written by an older version (or edited by hand) that the API would refuse is
    // dropped and reported; the rest loads.
    let dropped = 0;
    for (const raw of Array.isArray(saved.records) ? saved.records : []) {
      const r = this.admit(raw);
      if (typeof r === 'string') {
        dropped++;
        this.refuse(raw, r, 'load');
        continue;
      }
      this.setRecord(r);
      this.clock.observe(r.hlc);
    }
    if (dropped) await this.file.save().catch(() => undefined);
  }

  get index(): number {
    return this.lastIndex;
  }

  /** The index the next write will get (for CreateIndex/ModifyIndex of a value being built). */
  protected get nextIndex(): number {
    return this.lastIndex + 1;
  }

  protected value(id: string): T | undefined {
    const r = this.records.get(id);
    return r && !r.deleted ? r[this.field] as T | undefined : undefined;
  }

  /** Live values, in no particular order. */
  protected values(): T[] {
    const out: T[] = [];
    for (const r of this.records.values()) if (!r.deleted && r[this.field]) out.push(r[this.field] as T);
    return out;
  }

  protected async put(id: string, value: T): Promise<void> {
    await this.commit({ id, hlc: this.clock.tick(), deleted: false, [this.field]: value } as unknown as LwwRecord<F, T>);
  }

  protected async remove(id: string): Promise<void> {
    await this.commit({ id, hlc: this.clock.tick(), deleted: true } as LwwRecord<F, T>);
  }

  /** Applies a record, saves, and rolls back if the save fails. */
  private async commit(rec: LwwRecord<F, T>): Promise<void> {
    if (this.sealer) rec.sig = this.sealer(JSON.stringify(rec));
    const before = this.records.get(rec.id);
    this.apply(rec);
    try {
      await this.file.save();
    } catch (e) {
      if (before) this.setRecord(before);
      else this.setRecord(undefined, rec.id);
      this.feed.notify();
      throw new NodemeshError('STATE_WRITE_FAILED', `could not save ${this.label}: ${(e as Error).message}`, 500);
    }
    // Gossiped only once it is durable: a write the caller was told failed never reaches a peer.
    this.unsent.set(rec.id, rec);
    this.feed.notify();
  }

  private apply(rec: LwwRecord<F, T>): void {
    this.lastIndex++;
    const v = rec[this.field] as T | undefined;
    if (v) v.ModifyIndex = this.lastIndex;
    this.setRecord(rec);
    this.feed.notify();
  }

  /** Stores (or, with `rec` undefined, removes) a record; subclasses keep their indexes in step in `onSet`. */
  private setRecord(rec: LwwRecord<F, T> | undefined, id = rec?.id ?? ''): void {
    this.version++;
    const old = this.records.get(id);
    if (rec && rec[this.field]) (rec as Record<string, unknown>)[this.field] = this.shape(rec[this.field] as T);
    this.onSet(id, old && !old.deleted ? old[this.field] as T | undefined : undefined, rec && !rec.deleted ? rec[this.field] as T | undefined : undefined);
    if (rec) this.records.set(id, rec);
    else this.records.delete(id);
  }

  /** One object layout for every value however it was built (spread, JSON from disk or a peer). */
  protected shape(v: T): T {
    return v;
  }

  /** Called as a live value is replaced, added or removed. */
  protected onSet(_id: string, _old: T | undefined, _next: T | undefined): void {}

  /**
   * A record from a peer or the file, checked exactly as the API checks a write of its value: the normalized record
   * to store (rebuilt from known fields only, computed fields recomputed, `sig` kept as is), or why it is refused.
   */
  protected abstract admitRecord(r: unknown): LwwRecord<F, T> | string;

  /** admitRecord, never throwing, and the API's size limit on the value. */
  private admit(raw: unknown): LwwRecord<F, T> | string {
    let rec: LwwRecord<F, T> | string;
    try {
      rec = this.admitRecord(raw);
    } catch (e) {
      return `record cannot be checked: ${e instanceof Error ? e.message : String(e)}`;
    }
    if (typeof rec === 'string' || rec.deleted) return rec;
    let bytes: number;
    try {
      bytes = Buffer.byteLength(JSON.stringify(rec[this.field]) ?? '');
    } catch (e) {
      return `value cannot be serialized: ${e instanceof Error ? e.message : String(e)}`;
    }
    return bytes > MAX_VALUE_BYTES ? `value is ${bytes} bytes, over the ${MAX_VALUE_BYTES}-byte limit of an API write` : rec;
  }

  /** Quarantines a refused record; the handler hears of each id and reason once. */
  private refuse(raw: unknown, reason: string, phase: 'merge' | 'load'): void {
    const r = raw as { id?: unknown; hlc?: { node?: unknown } } | null;
    const id = typeof r?.id === 'string' ? r.id.slice(0, 128) : '?';
    const from = typeof r?.hlc?.node === 'string' ? r.hlc.node.slice(0, 128) : '?';
    const why = reason.slice(0, 512);
    const key = `${id}\0${why}`;
    const had = this.quarantine.get(key);
    if (had) {
      this.quarantine.delete(key); // re-inserted below as the newest
      this.quarantine.set(key, { ...had, from, at: Date.now(), phase, count: had.count + 1 });
      return;
    }
    if (this.quarantine.size >= MAX_QUARANTINED) this.quarantine.delete(this.quarantine.keys().next().value!);
    const q = { id, reason: why, from, at: Date.now(), phase, count: 1, told: false };
    this.quarantine.set(key, q);
    this.tell(q);
  }

  private tell(q: QuarantinedRecord & { told: boolean }): void {
    if (!this.refusedHandler || q.told) return;
    q.told = true;
    try {
      this.refusedHandler(this.setName, q.id, q.reason, q.from, q.phase);
    } catch {
      // a reporting failure must not stop the merge or the load
    }
  }

  /** Told of refused records (log, metric); set after `load`, it hears at once of the records load refused. */
  set onRefused(fn: RefusedRecordHandler | undefined) {
    this.refusedHandler = fn;
    for (const q of this.quarantine.values()) this.tell(q);
  }

  get onRefused(): RefusedRecordHandler | undefined {
    return this.refusedHandler;
  }

  /** Records refused so far (at most 256, oldest first). */
  quarantined(): QuarantinedRecord[] {
    return [...this.quarantine.values()].map(({ told: _told, ...q }) => q);
  }

  /** Last-writer-wins merge of a record from another agent; returns whether it changed anything. */
  merge(raw: unknown): boolean {
    if (!isLwwEnvelope(raw)) {
      this.refuse(raw, 'malformed record: id, deleted and hlc are required', 'merge');
      return false;
    }
    if (raw.hlc.wall > Date.now() + MAX_CLOCK_AHEAD_MS) return false;
    const mine = this.records.get(raw.id);
    if (mine && compareHlc(mine.hlc, raw.hlc) >= 0) return false; // not newer: nothing to check or take
    const rec = this.admit(raw);
    if (typeof rec === 'string') {
      this.refuse(raw, rec, 'merge');
      return false;
    }
    this.clock.observe(rec.hlc);
    this.apply(rec);
    this.file.save().catch(() => undefined);
    return true;
  }

  /** Records written here since the last call, to gossip at once (without scanning the whole set). */
  takeLocalWrites(): LwwRecord<F, T>[] {
    if (this.unsent.size === 0) return [];
    const out = [...this.unsent.values()];
    this.unsent.clear();
    return out;
  }

  allRecords(): LwwRecord<F, T>[] {
    return [...this.records.values()];
  }

  /** The clock of the record we hold for `id` (a peer's record is worth checking only if it is newer). */
  hlcOf(id: string): Hlc | undefined {
    return this.records.get(id)?.hlc;
  }

  /** The record we hold for `id`, as stored. */
  record(id: string): LwwRecord<F, T> | undefined {
    return this.records.get(id);
  }

  /** Records written before signing existed here (or by an agent without a policy key): re-signed by a new writer. */
  async sealUnsigned(): Promise<number> {
    if (!this.sealer) return 0;
    let n = 0;
    for (const r of this.records.values()) {
      if (r.sig) continue;
      const { sig: _drop, ...plain } = r;
      r.sig = this.sealer(JSON.stringify(plain));
      n++;
    }
    if (n) await this.file.save();
    return n;
  }

  async close(): Promise<void> {
    this.feed.close();
    await this.file.flush();
  }
}

/**
 * A record's envelope from a peer or the file, rebuilt from its known fields (`sig` kept as is, unchecked here), or
 * why it is malformed. Subclasses add the checked value.
 */
export function admitEnvelope(r: unknown): { id: string; hlc: Hlc; deleted: boolean; sig?: RecordSeal } | string {
  if (!isLwwEnvelope(r)) return 'malformed record: id, deleted and hlc are required';
  const { wall, logical, node } = r.hlc;
  if (!Number.isSafeInteger(wall) || wall < 0 || !Number.isSafeInteger(logical) || logical < 0) return 'malformed record: hlc wall and logical must be non-negative integers';
  if (node.length === 0 || node.length > 256) return 'malformed record: hlc node must be 1 to 256 characters';
  if (r.id.length === 0 || r.id.length > 512) return 'malformed record: id must be 1 to 512 characters';
  const out: { id: string; hlc: Hlc; deleted: boolean; sig?: RecordSeal } = { id: r.id, hlc: { wall, logical, node }, deleted: r.deleted };
  const sig = (r as { sig?: unknown }).sig;
  if (sig !== undefined) out.sig = sig as RecordSeal;
  return out;
}

/** The record shape every LWW set shares, checked before a peer's record is merged. */
export function isLwwEnvelope(r: unknown): r is { id: string; deleted: boolean; hlc: Hlc } {
  const x = r as { id?: unknown; deleted?: unknown; hlc?: Partial<Hlc> };
  return typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.deleted === 'boolean'
    && typeof x.hlc?.wall === 'number' && typeof x.hlc?.logical === 'number' && typeof x.hlc?.node === 'string';
}
