// A replicated set of records, last writer wins by hybrid logical clock, tombstones kept, durable on disk; the base of the intention and config-entry stores.

import { ChangeFeed } from './change-feed.js';
import { NodemeshError } from './errors.js';
import type { Hlc } from './hlc.js';
import { HybridClock, compareHlc } from './hlc.js';
import { StateFile } from './state-file.js';

/** One record: the latest write of a value (under `field`), or its tombstone. */
export type LwwRecord<F extends string, T> = { id: string; hlc: Hlc; deleted: boolean } & { [K in F]?: T };

interface Persisted<R> { format: 1; index: number; records: R[] }

/** A peer's clock this far ahead of ours would win every later merge and drag our clock along: refused. */
const MAX_CLOCK_AHEAD_MS = 60_000;

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

  constructor(path: string, node: string, protected readonly field: F, private readonly label: string) {
    this.clock = new HybridClock(node);
    this.file = new StateFile(path, () => ({ format: 1, index: this.lastIndex, records: [...this.records.values()] }));
  }

  async load(): Promise<void> {
    const saved = await this.file.load();
    if (!saved) return;
    if (saved.format !== 1) throw new NodemeshError('STATE_FORMAT', `${this.label} file ${this.file.path} has unknown format ${String(saved.format)}`);
    this.lastIndex = Math.max(this.lastIndex, saved.index);
    for (const r of saved.records) {
      this.setRecord(r);
      this.clock.observe(r.hlc);
    }
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
    await this.commit({ id, hlc: this.clock.tick(), deleted: false, [this.field]: value } as LwwRecord<F, T>);
  }

  protected async remove(id: string): Promise<void> {
    await this.commit({ id, hlc: this.clock.tick(), deleted: true } as LwwRecord<F, T>);
  }

  /** Applies a record, saves, and rolls back if the save fails. */
  private async commit(rec: LwwRecord<F, T>): Promise<void> {
    const before = this.records.get(rec.id);
    this.unsent.set(rec.id, rec);
    this.apply(rec);
    try {
      await this.file.save();
    } catch (e) {
      if (before) this.setRecord(before);
      else this.setRecord(undefined, rec.id);
      this.feed.notify();
      throw new NodemeshError('STATE_WRITE_FAILED', `could not save ${this.label}: ${(e as Error).message}`, 500);
    }
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

  /** Whether a record from a peer has the right shape; a bad one is dropped. */
  protected abstract isValidRecord(r: unknown): boolean;

  /** Last-writer-wins merge of a record from another agent; returns whether it changed anything. */
  merge(raw: unknown): boolean {
    if (!this.isValidRecord(raw)) return false;
    const rec = raw as LwwRecord<F, T>;
    if (rec.hlc.wall > Date.now() + MAX_CLOCK_AHEAD_MS) return false;
    const mine = this.records.get(rec.id);
    this.clock.observe(rec.hlc);
    if (mine && compareHlc(mine.hlc, rec.hlc) >= 0) return false;
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

  async close(): Promise<void> {
    this.feed.close();
    await this.file.flush();
  }
}

/** The record shape every LWW set shares, checked before a peer's record is merged. */
export function isLwwEnvelope(r: unknown): r is { id: string; deleted: boolean; hlc: Hlc } {
  const x = r as { id?: unknown; deleted?: unknown; hlc?: Partial<Hlc> };
  return typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.deleted === 'boolean'
    && typeof x.hlc?.wall === 'number' && typeof x.hlc?.logical === 'number' && typeof x.hlc?.node === 'string';
}
