// The config entries this agent knows: written through the API, replicated by gossip (last writer wins per kind and name), durable on disk.

import { NodemeshError } from '../lib/errors.js';
import { LwwRecordStore, admitEnvelope, type LwwRecord } from '../catalog/lww-record-store.js';
import { KINDS, L7_PROTOCOLS, decodeConfigEntry, entryNameError, protocolOf, type ConfigEntry, type Kind } from '../model/config-entry.js';

export type ConfigEntryRecord = LwwRecord<'entry', ConfigEntry>;

const key = (kind: string, name: string) => `${kind}/${name}`;

/**
 * The lookup a replicated entry is validated with: every service speaks HTTP, so decodeConfigEntry's only cross-entry
 * check (a router or splitter needs an HTTP-family protocol from another entry) always holds and only the entry's own
 * validity counts. Replicated state may be briefly inconsistent (a router may arrive before its service-defaults).
 */
const SELF_CONTAINED = (kind: Kind, name: string): ConfigEntry | undefined =>
  kind === 'service-defaults' ? { Kind: 'service-defaults', Name: name, Protocol: 'http', CreateIndex: 0, ModifyIndex: 0 } : undefined;

const isIndex = (v: unknown) => v === undefined || (Number.isSafeInteger(v) && (v as number) >= 0);

export class ConfigEntryStore extends LwwRecordStore<'entry', ConfigEntry> {
  constructor(path: string, node: string) {
    super(path, node, 'entry', 'config entries');
  }

  get(kind: Kind, name: string): ConfigEntry | undefined {
    return this.value(key(kind, name));
  }

  /** One kind's entries by name, or every entry. */
  list(kind?: Kind): ConfigEntry[] {
    return this.values().filter((e) => !kind || e.Kind === kind).sort((a, b) => a.Kind.localeCompare(b.Kind) || a.Name.localeCompare(b.Name));
  }

  /**
   * Validates and stores an entry (PUT /v1/config). With `cas`, only if the entry's ModifyIndex is still `cas`
   * (0: only if it does not exist); returns whether it was written.
   */
  async write(raw: unknown, cas?: number): Promise<boolean> {
    const lookup = (k: Kind, n: string) => this.get(k, n);
    const e = decodeConfigEntry(raw, lookup);
    const prev = this.get(e.Kind, e.Name);
    if (cas !== undefined && (prev?.ModifyIndex ?? 0) !== cas) return false;
    if (e.Kind === 'service-defaults' || e.Kind === 'proxy-defaults') this.checkRoutedStillL7(e as ConfigEntry);
    const index = this.nextIndex;
    await this.put(key(e.Kind, e.Name), { ...e, CreateIndex: prev?.CreateIndex ?? index, ModifyIndex: index });
    return true;
  }

  /** Removes an entry (no error if there is none, as Consul). */
  async delete(kind: Kind, name: string): Promise<void> {
    const prev = this.get(kind, name);
    if (!prev) return;
    if (kind === 'service-defaults' || kind === 'proxy-defaults') this.checkRoutedStillL7(undefined, prev);
    await this.remove(key(kind, name));
  }

  /**
   * A defaults change must not leave a routed or split service on a protocol that cannot be routed. Only what this
   * change breaks counts: replicated state can be briefly inconsistent (a peer's router arrived before its defaults),
   * and that must not block unrelated writes here.
   */
  private checkRoutedStillL7(next: ConfigEntry | undefined, removing?: ConfigEntry): void {
    const changed = next ?? removing!;
    const now = (k: Kind, n: string) => this.get(k, n);
    const lookup = (k: Kind, n: string) => (k === changed.Kind && n === changed.Name ? next : this.get(k, n));
    for (const e of this.values()) {
      if (e.Kind !== 'service-router' && e.Kind !== 'service-splitter') continue;
      if (!L7_PROTOCOLS.includes(protocolOf(e.Name, now))) continue;
      const p = protocolOf(e.Name, lookup);
      if (!L7_PROTOCOLS.includes(p)) {
        throw new NodemeshError('CONFIG_ENTRY_INVALID', `${e.Kind} ${JSON.stringify(e.Name)} needs an HTTP-family protocol; this change would make it ${JSON.stringify(p)}: delete the ${e.Kind} first`, 400);
      }
    }
  }

  /**
   * A peer's (or the file's) record: the entry decoded and validated as PUT /v1/config does (decodeConfigEntry, which
   * also drops CreateIndex/ModifyIndex), under its own kind/name id; or why it is refused. A tombstone carries no value.
   */
  protected override admitRecord(r: unknown): ConfigEntryRecord | string {
    const env = admitEnvelope(r);
    if (typeof env === 'string') return env;
    const slash = env.id.indexOf('/');
    const kind = env.id.slice(0, slash) as Kind;
    const name = env.id.slice(slash + 1);
    if (slash < 0 || !KINDS.includes(kind) || entryNameError(kind, name)) return `record id ${JSON.stringify(env.id.slice(0, 160))} is not a config entry's kind/name`;
    if (env.deleted) return env as ConfigEntryRecord;
    const raw = (r as { entry?: unknown }).entry;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'a live config entry record carries no entry';
    const { CreateIndex, ModifyIndex } = raw as { CreateIndex?: unknown; ModifyIndex?: unknown };
    if (!isIndex(CreateIndex) || !isIndex(ModifyIndex)) return 'config entry CreateIndex and ModifyIndex must be non-negative integers';
    let e: ReturnType<typeof decodeConfigEntry>;
    try {
      e = decodeConfigEntry(raw, SELF_CONTAINED);
    } catch (err) {
      if (err instanceof NodemeshError) return `invalid config entry: ${err.message.trim()}`;
      throw err;
    }
    if (key(e.Kind, e.Name) !== env.id) return `config entry ${JSON.stringify(key(e.Kind, e.Name).slice(0, 160))} is not the record's id ${JSON.stringify(env.id.slice(0, 160))}`;
    return { ...env, entry: { ...e, CreateIndex: (CreateIndex as number | undefined) ?? 0, ModifyIndex: (ModifyIndex as number | undefined) ?? 0 } };
  }
}
