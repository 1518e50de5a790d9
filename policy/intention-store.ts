// The intention store: Consul's create/update/delete rules, HLC-stamped records with tombstones, durable on disk.

import { randomUUID } from 'node:crypto';
import { NodemeshError, multiError } from '../lib/errors.js';
import { LwwRecordStore, admitEnvelope, type LwwRecord } from '../catalog/lww-record-store.js';
import { foldName, sameName } from '../model/service-names.js';
import type { Intention, IntentionInput } from '../model/intention.js';
import { compareIntentions, describeIntention, intentionHash, validateIntention, withDefaults } from '../model/intention.js';
import { UUID, admitIntention, intentionFields } from '../model/intention-record.js';
import { compilePermissions } from './decision.js';

/** One replicated record: the latest write of an intention, or its tombstone. */
export type IntentionRecord = LwwRecord<'intention', Intention>;

export class IntentionStore extends LwwRecordStore<'intention', Intention> {
  private sorted?: { version: number; list: Intention[] };
  /** Live intentions by source → destination pair, for the duplicate check without a scan. */
  private readonly byPair = new Map<string, string>();

  constructor(path: string, node: string) {
    super(path, node, 'intention', 'intentions');
  }

  /** Live intentions in Consul's list order; sorted once per change, shared (read-only) between callers. */
  list(): readonly Intention[] {
    if (this.sorted?.version === this.version) return this.sorted.list;
    const out = this.values().sort(compareIntentions);
    this.sorted = { version: this.version, list: out };
    return out;
  }

  get(id: string): Intention {
    if (!UUID.test(id)) throw new NodemeshError('INTENTION_BAD_ID', 'Bad request: failed intention lookup: index error: UUID must be 36 characters', 400);
    const r = this.records.get(id);
    if (!r || r.deleted || !r.intention) throw new NodemeshError('INTENTION_NOT_FOUND', 'Intention not found', 404);
    return r.intention;
  }

  /** Consul's "exact" lookup by source and destination names (default namespace), case-insensitively. */
  findExact(source: string, destination: string): Intention | undefined {
    const [src, dst] = [foldName(source), foldName(destination)];
    return this.list().find((i) => sameName(i.SourceName, src) && sameName(i.DestinationName, dst));
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
    await this.remove(id);
  }

  private async write(id: string, raw: IntentionInput, prev: Intention | undefined): Promise<Intention> {
    const input = withDefaults(raw);
    const errs = validateIntention(input);
    if (errs.length) throw new NodemeshError('INTENTION_INVALID', multiError(errs), 400);
    const fields = intentionFields(id, input);
    const dupId = this.byPair.get(pairKey(fields));
    const dup = dupId !== undefined && dupId !== id ? this.records.get(dupId)?.intention : undefined;
    if (dup) throw new NodemeshError('INTENTION_DUPLICATE', `duplicate intention found: ${describeIntention(dup)}`, 409);
    const now = new Date().toISOString();
    const index = this.nextIndex;
    const intention: Intention = {
      ...fields, Hash: intentionHash(fields), CreatedAt: prev?.CreatedAt ?? now, UpdatedAt: now,
      CreateIndex: prev?.CreateIndex ?? index, ModifyIndex: index,
    };
    await this.put(id, intention);
    // The stored (shaped) object, so what the caller gets equals what a later read returns.
    return this.value(id) ?? intention;
  }

  protected override onSet(id: string, old: Intention | undefined, next: Intention | undefined): void {
    if (old && this.byPair.get(pairKey(old)) === id) this.byPair.delete(pairKey(old));
    if (next) {
      this.byPair.set(pairKey(next), id);
      // L7 rules are compiled here, once per stored intention, never at request time.
      compilePermissions(next);
    }
  }

  protected override shape(i: Intention): Intention {
    return shaped(i);
  }

  /** A peer's (or the file's) record, as strictly as the API's create: see admitIntention. A tombstone carries no value. */
  protected override admitRecord(r: unknown): IntentionRecord | string {
    const env = admitEnvelope(r);
    if (typeof env === 'string') return env;
    if (!UUID.test(env.id)) return `record id ${JSON.stringify(env.id.slice(0, 64))} is not a UUID`;
    if (env.deleted) return env as IntentionRecord;
    const intention = admitIntention((r as { intention?: unknown }).intention, env.id);
    return typeof intention === 'string' ? intention : { ...env, intention };
  }
}

/** Names compare case-insensitively (as Consul's), so `web→api` and `WEB→Api` are one pair: a duplicate. */
const pairKey = (i: Pick<Intention, 'SourceNS' | 'SourceName' | 'DestinationNS' | 'DestinationName'>) =>
  foldName(`${i.SourceNS}\0${i.SourceName}\0${i.DestinationNS}\0${i.DestinationName}`);

/**
 * One object layout for every intention, however it was built (spread, JSON from disk or a peer): the
 * matcher reads these on every cold decision, and mixed layouts made that scan ~30x slower.
 */
function shaped(i: Intention): Intention {
  return {
    ID: i.ID, Description: i.Description, SourceNS: i.SourceNS, SourceName: i.SourceName, DestinationNS: i.DestinationNS,
    DestinationName: i.DestinationName, SourceType: i.SourceType, Action: i.Action, Permissions: i.Permissions, DefaultAddr: i.DefaultAddr,
    DefaultPort: i.DefaultPort, Meta: i.Meta, Precedence: i.Precedence, CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt,
    Hash: i.Hash, CreateIndex: i.CreateIndex, ModifyIndex: i.ModifyIndex,
  };
}
