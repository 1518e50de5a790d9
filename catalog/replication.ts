// Catalog replication over the gossip pool: each agent announces its own node's version; peers that are behind
// pull the full state by push/pull; other replicated sets (intentions) ride along, merged by their own rules.

import type { Catalog } from './catalog-store.js';
import type { NodeSnapshot } from './types.js';

/** Another replicated data set (intentions): exported whole in push/pull, merged by its own last-writer-wins rules. */
export interface ReplicatedSet {
  name: string;
  exportAll(): unknown[];
  /** Returns how many records changed something here. */
  merge(records: unknown[]): number;
  /** Records written here since the last call, to gossip at once. */
  takeLocalChanges(): unknown[];
}

interface Digest { t: 'digest'; node: string; version: number }
interface Records { t: 'records'; set: string; records: unknown[] }
type AppMessage = Digest | Records;

export interface ReplicatorIo {
  /** `key`: a newer message with the same key replaces a queued older one. */
  broadcast(body: Buffer, key?: string): void;
  /** Start a push/pull with the named node (we are behind it). */
  pull(node: string): void;
  /**
   * Whether a node still belongs in the catalog (a member that has not left and was not reaped), so a
   * peer that has not forgotten it yet cannot bring it back.
   */
  isMember(node: string): boolean;
}

export class CatalogReplicator {
  private announced = -1;
  /** Highest version heard of per node, so each announcement is passed on once (epidemic spread). */
  private readonly heard = new Map<string, number>();

  constructor(
    private readonly catalog: Catalog,
    private readonly self: string,
    private readonly sets: ReplicatedSet[],
    private readonly io: ReplicatorIo,
  ) {}

  /** Call after local changes: announces our node's new version and gossips new local records. */
  localChanged(): void {
    const me = this.catalog.getNode(this.self);
    if (me && me.version !== this.announced) {
      this.announced = me.version;
      this.send({ t: 'digest', node: this.self, version: me.version });
    }
    for (const s of this.sets) {
      const records = s.takeLocalChanges();
      // Small records travel by UDP gossip; each goes alone so it fits a packet.
      for (const r of records) this.send({ t: 'records', set: s.name, records: [r] });
    }
  }

  private send(msg: AppMessage): void {
    const rec = msg.t === 'records' ? (msg.records[0] as { id?: unknown } | undefined) : undefined;
    const key = msg.t === 'digest' ? `digest:${msg.node}` : typeof rec?.id === 'string' ? `${msg.set}:${rec.id}` : undefined;
    this.io.broadcast(Buffer.from(JSON.stringify(msg)), key);
  }

  onMessage(body: Buffer): void {
    const msg = JSON.parse(body.toString('utf8')) as AppMessage;
    if (msg.t === 'digest') {
      if (typeof msg.node !== 'string' || typeof msg.version !== 'number' || msg.node === this.self) return;
      if (msg.version <= (this.heard.get(msg.node) ?? -1)) return;
      this.heard.set(msg.node, msg.version);
      this.send(msg); // pass it on: peers only gossip to a few others each round
      const have = this.catalog.getNode(msg.node)?.version ?? -1;
      if (msg.version > have) this.io.pull(msg.node);
    } else if (msg.t === 'records') {
      const set = this.sets.find((s) => s.name === msg.set);
      if (set && Array.isArray(msg.records) && set.merge(msg.records) > 0) this.send(msg);
    }
  }

  /** Everything we know, for a push/pull. */
  localState(): Buffer {
    const nodes = this.catalog.allNodes().map((n) => this.catalog.snapshotNode(n.info.Node)!);
    const sets = Object.fromEntries(this.sets.map((s) => [s.name, s.exportAll()]));
    return Buffer.from(JSON.stringify({ nodes, sets }));
  }

  /** Takes every node entry that is newer than ours (never our own: only this agent writes it). */
  mergeState(buf: Buffer): void {
    const state = JSON.parse(buf.toString('utf8')) as { nodes?: NodeSnapshot[]; sets?: Record<string, unknown[]> };
    for (const snap of state.nodes ?? []) {
      if (!snap?.info?.Node || snap.info.Node === this.self || typeof snap.version !== 'number' || !this.io.isMember(snap.info.Node)) continue;
      this.catalog.applyRemote(snap);
    }
    for (const s of this.sets) {
      const records = state.sets?.[s.name];
      if (Array.isArray(records)) s.merge(records);
    }
  }
}
