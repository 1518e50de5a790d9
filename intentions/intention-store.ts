// The intention store: Consul's create/update/delete rules, HLC-stamped records with tombstones, durable on disk.

import { randomUUID } from 'node:crypto';
import { ChangeFeed } from '../catalog/change-feed.js';
import { NodemeshError, multiError } from '../catalog/errors.js';
import { StateFile } from '../catalog/state-file.js';
import type { Hlc } from './hlc.js';
import { HybridClock, compareHlc } from './hlc.js';
import type { Intention, IntentionInput } from './intention.js';
import { compareIntentions, describeIntention, intentionHash, precedence, validateIntention, withDefaults } from './intention.js';

/** One replicated record: the latest write of an intention, or its tombstone. */
export interface IntentionRecord {
  id: string;
  hlc: Hlc;
  deleted: boolean;
  intention?: Intention;
}

interface Persisted { format: 1; index: number; records: IntentionRecord[] }

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class IntentionStore {
  readonly feed = new ChangeFeed();
  private readonly records = new Map<string, IntentionRecord>();
  /** Local writes not yet handed to gossip (latest per id). */
  private readonly unsent = new Map<string, IntentionRecord>();
  /** Bumped on every change to `records`, for the sorted list's cache. */
  private version = 0;
  private sorted?: { version: number; list: Intention[] };
  /** Live intentions by source → destination pair, for the duplicate check without a scan. */
  private readonly byPair = new Map<string, string>();
  private readonly clock: HybridClock;
  private readonly file: StateFile<Persisted>;
  private lastIndex = 1;

  constructor(path: string, node: string) {
    this.clock = new HybridClock(node);
    this.file = new StateFile(path, () => ({ format: 1, index: this.lastIndex, records: [...this.records.values()] }));
  }

  async load(): Promise<void> {
    const saved = await this.file.load();
    if (!saved) return;
    if (saved.format !== 1) throw new NodemeshError('STATE_FORMAT', `intentions file ${this.file.path} has unknown format ${String(saved.format)}`);
    this.lastIndex = Math.max(this.lastIndex, saved.index);
    for (const r of saved.records) {
      this.setRecord(r);
      this.clock.observe(r.hlc);
    }
  }

  get index(): number {
    return this.lastIndex;
  }

  /** Live intentions in Consul's list order; sorted once per change, shared (read-only) between callers. */
  list(): readonly Intention[] {
    if (this.sorted?.version === this.version) return this.sorted.list;
    const out: Intention[] = [];
    for (const r of this.records.values()) if (!r.deleted && r.intention) out.push(r.intention);
    out.sort(compareIntentions);
    this.sorted = { version: this.version, list: out };
    return out;
  }

  get(id: string): Intention {
    if (!UUID.test(id)) throw new NodemeshError('INTENTION_BAD_ID', 'Bad request: failed intention lookup: index error: UUID must be 36 characters', 400);
    const r = this.records.get(id);
    if (!r || r.deleted || !r.intention) throw new NodemeshError('INTENTION_NOT_FOUND', 'Intention not found', 404);
    return r.intention;
  }

  /** Consul's "exact" lookup by source and destination names (default namespace). */
  findExact(source: string, destination: string): Intention | undefined {
    return this.list().find((i) => i.SourceName === source && i.DestinationName === destination);
  }

  async create(input: IntentionInput): Promise<Intention> {
    if (input.ID) throw new NodemeshError('INTENTION_ID_SET', 'ID must be empty when creating a new intention', 400);
    return this.write(randomUUID(), input, undefined);
  }

  /** Replaces the whole intention (Description and Meta are cleared if omitted). */
  async update(id: string, input: IntentionInput): Promise<Intention> {
    const existing = UUID.test(id) ? this.records.get(id) : undefined;
    if (!existing || existing.deleted || !existing.intention) {
      throw new NodemeshError('INTENTION_NOT_FOUND', `Cannot modify non-existent intention: '${id}'`, 404);
    }
    return this.write(id, input, existing.intention);
  }

  async delete(id: string): Promise<void> {
    const existing = UUID.test(id) ? this.records.get(id) : undefined;
    if (!existing || existing.deleted) throw new NodemeshError('INTENTION_NOT_FOUND', `Cannot delete non-existent intention: '${id}'`, 404);
    await this.commit({ id, hlc: this.clock.tick(), deleted: true });
  }

  private async write(id: string, raw: IntentionInput, prev: Intention | undefined): Promise<Intention> {
    const input = withDefaults(raw);
    const errs = validateIntention(input);
    if (errs.length) throw new NodemeshError('INTENTION_INVALID', multiError(errs), 400);
    const fields = {
      ID: id,
      Description: input.Description ?? '',
      SourceNS: input.SourceNS!, SourceName: input.SourceName!, DestinationNS: input.DestinationNS!, DestinationName: input.DestinationName!,
      SourceType: input.SourceType!, Action: input.Action as Intention['Action'],
      DefaultAddr: input.DefaultAddr ?? '', DefaultPort: input.DefaultPort ?? 0, Meta: input.Meta ?? {},
      Precedence: 0,
    };
    fields.Precedence = precedence(fields);
    const dupId = this.byPair.get(pairKey(fields));
    const dup = dupId !== undefined && dupId !== id ? this.records.get(dupId)?.intention : undefined;
    if (dup) throw new NodemeshError('INTENTION_DUPLICATE', `duplicate intention found: ${describeIntention(dup)}`, 409);
    const now = new Date().toISOString();
    const index = this.lastIndex + 1;
    const intention: Intention = {
      ...fields, Hash: intentionHash(fields), CreatedAt: prev?.CreatedAt ?? now, UpdatedAt: now,
      CreateIndex: prev?.CreateIndex ?? index, ModifyIndex: index,
    };
    await this.commit({ id, hlc: this.clock.tick(), deleted: false, intention });
    return intention;
  }

  /** Applies a record, saves, and rolls back if the save fails. */
  private async commit(rec: IntentionRecord): Promise<void> {
    const before = this.records.get(rec.id);
    this.unsent.set(rec.id, rec);
    this.apply(rec);
    try {
      await this.file.save();
    } catch (e) {
      if (before) this.setRecord(before);
      else this.setRecord(undefined, rec.id);
      this.feed.notify();
      throw new NodemeshError('STATE_WRITE_FAILED', `could not save intentions: ${(e as Error).message}`, 500);
    }
  }

  private apply(rec: IntentionRecord): void {
    this.lastIndex++;
    if (rec.intention) rec.intention.ModifyIndex = this.lastIndex;
    this.setRecord(rec);
    this.feed.notify();
  }

  /** Stores (or, with `rec` undefined, removes) a record, keeping the pair index in step. */
  private setRecord(rec: IntentionRecord | undefined, id = rec?.id ?? ''): void {
    this.version++;
    const old = this.records.get(id);
    if (old?.intention && !old.deleted && this.byPair.get(pairKey(old.intention)) === id) this.byPair.delete(pairKey(old.intention));
    if (!rec) {
      this.records.delete(id);
      return;
    }
    if (rec.intention) rec.intention = shaped(rec.intention);
    this.records.set(id, rec);
    if (rec.intention && !rec.deleted) this.byPair.set(pairKey(rec.intention), id);
  }

  /** Last-writer-wins merge of a record from another agent; returns whether it changed anything. */
  merge(rec: IntentionRecord): boolean {
    // A clock far ahead of ours would win every later merge and drag our clock along: refuse it.
    if (rec.hlc.wall > Date.now() + 60_000) return false;
    const mine = this.records.get(rec.id);
    this.clock.observe(rec.hlc);
    if (mine && compareHlc(mine.hlc, rec.hlc) >= 0) return false;
    this.apply(rec);
    this.file.save().catch(() => undefined);
    return true;
  }

  /** Records written here since the last call, to gossip at once (without scanning the whole set). */
  takeLocalWrites(): IntentionRecord[] {
    if (this.unsent.size === 0) return [];
    const out = [...this.unsent.values()];
    this.unsent.clear();
    return out;
  }

  allRecords(): IntentionRecord[] {
    return [...this.records.values()];
  }

  async close(): Promise<void> {
    this.feed.close();
    await this.file.flush();
  }
}

const pairKey = (i: Pick<Intention, 'SourceNS' | 'SourceName' | 'DestinationNS' | 'DestinationName'>) => `${i.SourceNS}\0${i.SourceName}\0${i.DestinationNS}\0${i.DestinationName}`;

/**
 * One object layout for every intention, however it was built (spread, JSON from disk or a peer): the
 * matcher reads these on every cold decision, and mixed layouts made that scan ~30x slower.
 */
function shaped(i: Intention): Intention {
  return {
    ID: i.ID, Description: i.Description, SourceNS: i.SourceNS, SourceName: i.SourceName, DestinationNS: i.DestinationNS,
    DestinationName: i.DestinationName, SourceType: i.SourceType, Action: i.Action, DefaultAddr: i.DefaultAddr,
    DefaultPort: i.DefaultPort, Meta: i.Meta, Precedence: i.Precedence, CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt,
    Hash: i.Hash, CreateIndex: i.CreateIndex, ModifyIndex: i.ModifyIndex,
  };
}
