// Catalog replication over the gossip pool: each agent announces its own node's version, signed; peers that are behind
// pull the full state by push/pull, where every node's entry travels as its node signed it; other replicated sets
// (intentions, config entries) ride along, merged and checked by their own rules.

import type { Catalog } from './catalog-store.js';
import type { NodeSnapshot } from '../model/catalog-types.js';

/** Another replicated data set (intentions): exported whole in push/pull, merged by its own last-writer-wins rules. */
export interface ReplicatedSet {
  name: string;
  exportAll(): unknown[];
  /** Returns how many records changed something here. */
  merge(records: unknown[]): number;
  /** Records written here since the last call, to gossip at once. */
  takeLocalChanges(): unknown[];
}

interface Digest { t: 'digest'; node: string; version: number; by?: string; sig?: string }
interface Records { t: 'records'; set: string; records: unknown[] }
type AppMessage = Digest | Records;

/** A signature over a body, and who made it (a certificate fingerprint). */
export interface Seal { by: string; sig: string }
/** A node's entry as the node signed it (relayed byte for byte). */
interface SignedNode extends Seal { body: string }

/**
 * Who may say what about the catalog: this agent seals its own entry and announcements; a received one counts only
 * if its seal comes from an authority for that node (the node's own credential, or the pool's root).
 */
export interface CatalogAuthority {
  seal(body: string): Seal;
  /** 'ok'; 'unknown' when the signer's chain has not been learned yet; else why it is refused. */
  checkNode(node: string, body: string, seal: Partial<Seal> | undefined): 'ok' | 'unknown' | string;
  /** Signer chains to send along in a push/pull, and to learn from one. */
  chains(): unknown[];
  learn(chains: unknown): void;
}

/** Text of an announcement's seal: a node's version, so a peer cannot announce another node's (or a huge) version. */
const digestText = (node: string, version: number) => `nodemesh-digest\0${node}\0${version}`;

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
  /** A node entry or announcement was refused (logged and counted by the agent). */
  refused(what: 'node' | 'digest', node: string, reason: string): void;
}

export class CatalogReplicator {
  private announced = -1;
  /** Highest version heard of per node, so each announcement is passed on once (epidemic spread). */
  private readonly heard = new Map<string, number>();
  /** Other nodes' entries as they signed them, for relaying; ours is sealed once per version. */
  private readonly signed = new Map<string, SignedNode & { version: number }>();

  constructor(
    private readonly catalog: Catalog,
    private readonly self: string,
    private readonly sets: ReplicatedSet[],
    private readonly io: ReplicatorIo,
    private readonly authority: CatalogAuthority,
  ) {}

  /** Call after local changes: announces our node's new version and gossips new local records. */
  localChanged(): void {
    const me = this.catalog.getNode(this.self);
    if (me && me.version !== this.announced) {
      this.announced = me.version;
      this.send({ t: 'digest', node: this.self, version: me.version, ...this.authority.seal(digestText(this.self, me.version)) });
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
      if (typeof msg.node !== 'string' || !Number.isSafeInteger(msg.version) || msg.version < 0 || msg.node === this.self) return;
      if (msg.version <= (this.heard.get(msg.node) ?? -1)) return;
      const verdict = this.authority.checkNode(msg.node, digestText(msg.node, msg.version), msg);
      if (verdict !== 'ok' && verdict !== 'unknown') return this.io.refused('digest', msg.node, verdict);
      const have = this.catalog.getNode(msg.node)?.version ?? -1;
      // An announcement we cannot check yet (signer not learned) only prompts a pull from that node: its entry comes
      // back signed with its chain; it is neither remembered nor passed on.
      if (verdict === 'unknown') {
        if (msg.version > have) this.io.pull(msg.node);
        return;
      }
      this.heard.set(msg.node, msg.version);
      this.send({ t: 'digest', node: msg.node, version: msg.version, by: msg.by, sig: msg.sig }); // pass it on: peers only gossip to a few others each round
      if (msg.version > have) this.io.pull(msg.node);
    } else if (msg.t === 'records') {
      const set = this.sets.find((s) => s.name === msg.set);
      if (set && Array.isArray(msg.records) && set.merge(msg.records) > 0) this.send(msg);
    }
  }

  /** Our own entry, sealed once per version. */
  private ownEntry(): SignedNode | undefined {
    const me = this.catalog.getNode(this.self);
    if (!me) return undefined;
    const have = this.signed.get(this.self);
    if (have?.version === me.version) return have;
    const body = JSON.stringify(this.catalog.snapshotNode(this.self));
    const entry = { body, ...this.authority.seal(body), version: me.version };
    this.signed.set(this.self, entry);
    return entry;
  }

  /** Everything we know, for a push/pull: every node's entry as its node signed it, the signers' chains, the sets. */
  localState(): Buffer {
    const nodes: SignedNode[] = [];
    const own = this.ownEntry();
    if (own) nodes.push({ body: own.body, by: own.by, sig: own.sig });
    for (const [name, e] of this.signed) {
      if (name === this.self) continue;
      if (!this.catalog.getNode(name)) this.signed.delete(name); // left or reaped: not relayed any more
      else nodes.push({ body: e.body, by: e.by, sig: e.sig });
    }
    const sets = Object.fromEntries(this.sets.map((s) => [s.name, s.exportAll()]));
    return Buffer.from(JSON.stringify({ nodes, certs: this.authority.chains(), sets }));
  }

  /**
   * Takes every node entry that is newer than ours and sealed by that node's authority (never our own: only this
   * agent writes it). The sets check their own records.
   */
  mergeState(buf: Buffer): void {
    const state = JSON.parse(buf.toString('utf8')) as { nodes?: unknown[]; certs?: unknown; sets?: Record<string, unknown[]> };
    this.authority.learn(state.certs);
    for (const raw of Array.isArray(state.nodes) ? state.nodes : []) {
      try {
        this.mergeNode(raw);
      } catch (e) {
        this.io.refused('node', '?', `entry could not be taken: ${(e as Error).message}`); // one bad entry never stops the rest
      }
    }
    for (const s of this.sets) {
      const records = state.sets?.[s.name];
      if (Array.isArray(records)) s.merge(records);
    }
  }

  private mergeNode(raw: unknown): void {
    const e = raw as Partial<SignedNode> | null;
    if (typeof e !== 'object' || e === null || typeof e.body !== 'string' || e.body.length > 16 * 1024 * 1024) return this.io.refused('node', '?', 'malformed entry');
    let snap: NodeSnapshot;
    try {
      snap = JSON.parse(e.body) as NodeSnapshot;
    } catch {
      return this.io.refused('node', '?', 'unparsable entry');
    }
    const problem = snapshotProblem(snap);
    if (problem) return this.io.refused('node', typeof snap?.info?.Node === 'string' ? snap.info.Node.slice(0, 128) : '?', problem);
    const node = snap.info.Node;
    if (node === this.self || !this.io.isMember(node)) return;
    if (snap.version <= (this.catalog.getNode(node)?.version ?? -1)) return; // not newer: nothing to check or take
    const verdict = this.authority.checkNode(node, e.body, e);
    if (verdict !== 'ok') return this.io.refused('node', node, verdict === 'unknown' ? 'signer unknown' : verdict);
    if (this.catalog.applyRemote(snap)) this.signed.set(node, { body: e.body, by: e.by!, sig: e.sig!, version: snap.version });
  }
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isStrMap = (x: unknown) => isObj(x) && Object.values(x).every((v) => typeof v === 'string');

/** Why a node entry from a peer cannot be taken (its shape), or undefined: the catalog must never see a malformed one. */
function snapshotProblem(s: NodeSnapshot): string | undefined {
  if (!isObj(s) || !isObj(s.info)) return 'no node info';
  const i = s.info;
  if (typeof i.Node !== 'string' || !/^[A-Za-z0-9._-]{1,128}$/.test(i.Node)) return 'bad node name';
  if (typeof i.ID !== 'string' || typeof i.Address !== 'string' || typeof i.Datacenter !== 'string' || !isStrMap(i.TaggedAddresses) || !isStrMap(i.Meta)) return 'bad node info';
  if (!Number.isSafeInteger(s.version) || s.version < 0) return 'bad version';
  if (!Array.isArray(s.services) || !Array.isArray(s.checks)) return 'services and checks must be lists';
  for (const v of s.services as unknown[]) {
    const x = v as Record<string, unknown>;
    if (!isObj(x) || typeof x.ID !== 'string' || typeof x.Service !== 'string' || !Number.isInteger(x.Port) || typeof x.Address !== 'string'
      || !Array.isArray(x.Tags) || !x.Tags.every((t) => typeof t === 'string') || !isStrMap(x.Meta) || !isObj(x.Weights)) return 'bad service';
    if (x.Proxy !== undefined && (!isObj(x.Proxy) || typeof x.Proxy.DestinationServiceName !== 'string' || (x.Proxy.Upstreams !== undefined && !Array.isArray(x.Proxy.Upstreams)))) return 'bad proxy';
  }
  for (const v of s.checks as unknown[]) {
    const x = v as Record<string, unknown>;
    if (!isObj(x) || typeof x.CheckID !== 'string' || typeof x.Status !== 'string' || !['passing', 'warning', 'critical', 'maintenance'].includes(x.Status) || x.Node !== i.Node) return 'bad check';
  }
  return undefined;
}
