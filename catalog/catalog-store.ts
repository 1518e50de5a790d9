// The in-memory catalog of every known node, its service instances and checks, with Raft-style indexes.

import { ChangeFeed } from '../lib/change-feed.js';
import { NodemeshError } from '../lib/errors.js';
import { foldName } from '../model/service-names.js';
import type {
  CheckRecord, HealthStatus, NodeEntry, NodeInfo, NodeSnapshot, ServiceRecord,
} from '../model/catalog-types.js';

/** Operations on one node's entries, applied under a single new index. */
export interface NodeTx {
  readonly index: number;
  readonly entry: NodeEntry;
  putService(svc: Omit<ServiceRecord, 'CreateIndex' | 'ModifyIndex'>): ServiceRecord;
  deleteService(id: string): boolean;
  putCheck(check: Omit<CheckRecord, 'CreateIndex' | 'ModifyIndex' | 'Node'>): CheckRecord;
  deleteCheck(id: string): boolean;
  setCheckStatus(id: string, status: HealthStatus, output: string): boolean;
}

export interface ServiceNode { node: NodeEntry; service: ServiceRecord }

type Table = 'nodes' | 'services' | 'checks';

/** Folded name → node → service IDs: where a name's records are, without scanning every node. */
type NameIndex = Map<string, Map<string, Set<string>>>;

function indexEdit(index: NameIndex, name: string, node: string, id: string, add: boolean): void {
  let byNode = index.get(name);
  if (add) {
    if (!byNode) index.set(name, (byNode = new Map()));
    let ids = byNode.get(node);
    if (!ids) byNode.set(node, (ids = new Set()));
    ids.add(id);
    return;
  }
  const ids = byNode?.get(node);
  if (!ids?.delete(id) || ids.size > 0) return;
  byNode!.delete(node);
  if (byNode!.size === 0) index.delete(name);
}

/** The names a record serves Connect traffic for: a proxy's destination, a Connect-native service's own name. */
function connectTargets(s: ServiceRecord): string[] {
  const out: string[] = [];
  if (s.Kind === 'connect-proxy' && s.Proxy?.DestinationServiceName) out.push(foldName(s.Proxy.DestinationServiceName));
  if (s.Connect?.Native === true && !out.includes(foldName(s.Service))) out.push(foldName(s.Service));
  return out;
}

export class Catalog {
  readonly feed = new ChangeFeed();
  private readonly nodes = new Map<string, NodeEntry>();
  private readonly tableIndex: Record<Table, number> = { nodes: 1, services: 1, checks: 1 };
  /** Last index at which anything about a service name (folded) changed (kept after deletion, so waiters wake). */
  private readonly serviceIndex = new Map<string, number>();
  /**
   * Records by folded service name, and connect-capable records by the folded name they serve: service names compare
   * case-insensitively, as Consul's state store indexes them lower-cased.
   */
  private readonly byService: NameIndex = new Map();
  private readonly byConnect: NameIndex = new Map();
  private lastIndex = 1;

  get index(): number {
    return this.lastIndex;
  }

  /** Restarts the index counter after a restore, so indexes never go backwards across restarts. */
  raiseIndex(to: number): void {
    if (to > this.lastIndex) {
      this.lastIndex = to;
      for (const t of Object.keys(this.tableIndex) as Table[]) this.tableIndex[t] = Math.max(this.tableIndex[t], to);
    }
  }

  /** Creates or updates a node's identity (address, meta); the node's entries are kept. */
  upsertNode(info: NodeInfo): NodeEntry {
    const existing = this.nodes.get(info.Node);
    if (existing && JSON.stringify(existing.info) === JSON.stringify(info)) return existing;
    const idx = ++this.lastIndex;
    const entry: NodeEntry = existing ?? {
      info, version: 0, createIndex: idx, modifyIndex: idx, services: new Map(), checks: new Map(),
    };
    entry.info = info;
    entry.modifyIndex = idx;
    entry.version++;
    this.nodes.set(info.Node, entry);
    this.tableIndex.nodes = idx;
    for (const s of entry.services.values()) this.serviceIndex.set(foldName(s.Service), idx);
    this.feed.notify();
    return entry;
  }

  removeNode(name: string): boolean {
    const entry = this.nodes.get(name);
    if (!entry) return false;
    const idx = ++this.lastIndex;
    this.nodes.delete(name);
    this.indexNode(name, entry, false);
    for (const s of entry.services.values()) this.serviceIndex.set(foldName(s.Service), idx);
    this.tableIndex.nodes = this.tableIndex.services = this.tableIndex.checks = idx;
    this.feed.notify();
    return true;
  }

  /**
   * Applies `fn`'s operations to one node under one new index. The node's version rises once if
   * anything changed; blocking queries wake once.
   */
  mutate<T>(nodeName: string, fn: (tx: NodeTx) => T): T {
    const entry = this.nodes.get(nodeName);
    if (!entry) throw new NodemeshError('CATALOG_UNKNOWN_NODE', `catalog: unknown node ${nodeName}`, 500);
    const index = this.lastIndex + 1;
    const touched = new Set<Table>();
    const touchedServices = new Set<string>();
    const serviceName = (id: string) => entry.services.get(id)?.Service;
    const touchService = (name: string | undefined) => { if (name) touchedServices.add(foldName(name)); };
    const indexService = (s: ServiceRecord, add: boolean) => this.indexService(nodeName, s, add);
    const tx: NodeTx = {
      index,
      entry,
      putService(svc) {
        const prev = entry.services.get(svc.ID);
        const rec: ServiceRecord = { ...svc, CreateIndex: prev?.CreateIndex ?? index, ModifyIndex: index };
        if (prev) indexService(prev, false);
        entry.services.set(svc.ID, rec);
        indexService(rec, true);
        touched.add('services');
        touchService(prev?.Service);
        touchService(svc.Service);
        return rec;
      },
      deleteService(id) {
        const prev = entry.services.get(id);
        if (!prev) return false;
        entry.services.delete(id);
        indexService(prev, false);
        touched.add('services');
        touchService(prev.Service);
        return true;
      },
      putCheck(check) {
        const prev = entry.checks.get(check.CheckID);
        const rec: CheckRecord = {
          ...check, Node: nodeName, CreateIndex: prev?.CreateIndex ?? index, ModifyIndex: index,
        };
        entry.checks.set(check.CheckID, rec);
        touched.add('checks');
        touchService(serviceName(rec.ServiceID));
        if (!rec.ServiceID) for (const s of entry.services.values()) touchService(s.Service);
        return rec;
      },
      deleteCheck(id) {
        const prev = entry.checks.get(id);
        if (!prev) return false;
        entry.checks.delete(id);
        touched.add('checks');
        touchService(serviceName(prev.ServiceID) ?? prev.ServiceName);
        return true;
      },
      setCheckStatus(id, status, output) {
        const prev = entry.checks.get(id);
        if (!prev || (prev.Status === status && prev.Output === output)) return false;
        entry.checks.set(id, { ...prev, Status: status, Output: output, ModifyIndex: index });
        touched.add('checks');
        touchService(serviceName(prev.ServiceID));
        if (!prev.ServiceID) for (const s of entry.services.values()) touchService(s.Service);
        return true;
      },
    };
    const result = fn(tx);
    if (touched.size > 0) {
      this.lastIndex = index;
      entry.version++;
      entry.modifyIndex = index;
      for (const t of touched) this.tableIndex[t] = index;
      for (const s of touchedServices) {
        // A name with no instances left needs no entry: the services table index already covers its removal.
        if (!this.byService.has(s)) this.serviceIndex.delete(s);
        else this.serviceIndex.set(s, index);
      }
      this.feed.notify();
    }
    return result;
  }

  /** Replaces a check's output without moving any index or waking anyone (output-only updates). */
  setCheckOutputQuietly(nodeName: string, checkId: string, output: string): void {
    const c = this.nodes.get(nodeName)?.checks.get(checkId);
    if (c) this.nodes.get(nodeName)!.checks.set(checkId, { ...c, Output: output });
  }

  /**
   * A remote node's entries as its owner last published them: applied only if newer than what we hold.
   * Its version is kept as the owner set it, so replicas compare like with like.
   */
  applyRemote(snap: NodeSnapshot): boolean {
    const old = this.nodes.get(snap.info.Node);
    if (old && old.version >= snap.version) return false;
    const idx = ++this.lastIndex;
    const entry: NodeEntry = {
      info: structuredClone(snap.info), version: snap.version,
      createIndex: old?.createIndex ?? idx, modifyIndex: idx,
      services: new Map(snap.services.map((s) => [s.ID, { ...structuredClone(s), CreateIndex: s.CreateIndex, ModifyIndex: idx }])),
      checks: new Map(snap.checks.map((c) => [c.CheckID, { ...structuredClone(c), ModifyIndex: idx }])),
    };
    // Our own view of the node's liveness (serfHealth) wins over what it said about itself while it was down.
    const health = old?.checks.get('serfHealth');
    if (health && health.Status !== 'passing') entry.checks.set('serfHealth', { ...health, ModifyIndex: idx });
    this.replaceEntry(snap.info.Node, old, entry);
    for (const s of [...(old?.services.values() ?? []), ...entry.services.values()]) this.serviceIndex.set(foldName(s.Service), idx);
    this.tableIndex.nodes = this.tableIndex.services = this.tableIndex.checks = idx;
    this.feed.notify();
    return true;
  }

  /** Sets a node's serfHealth as this agent sees it (gossip liveness), without touching the node's version. */
  setNodeHealth(name: string, status: 'passing' | 'critical', output: string): void {
    const n = this.nodes.get(name);
    const c = n?.checks.get('serfHealth');
    if (!n || !c || (c.Status === status && c.Output === output)) return;
    const idx = ++this.lastIndex;
    n.checks.set('serfHealth', { ...c, Status: status, Output: output, ModifyIndex: idx });
    for (const s of n.services.values()) this.serviceIndex.set(foldName(s.Service), idx);
    this.tableIndex.checks = idx;
    this.feed.notify();
  }

  // ---- snapshots (persistence now, replication later) ----

  snapshotNode(name: string): NodeSnapshot | undefined {
    const e = this.nodes.get(name);
    if (!e) return undefined;
    return {
      info: structuredClone(e.info),
      version: e.version,
      createIndex: e.createIndex,
      modifyIndex: e.modifyIndex,
      services: structuredClone([...e.services.values()]),
      checks: structuredClone([...e.checks.values()]),
    };
  }

  /** Replaces a node's whole entry with a snapshot (restore at start, rollback after a failed write). */
  restoreNode(snap: NodeSnapshot): void {
    this.raiseIndex(Math.max(snap.modifyIndex, ...snap.services.map((s) => s.ModifyIndex), ...snap.checks.map((c) => c.ModifyIndex)));
    const idx = ++this.lastIndex;
    const old = this.nodes.get(snap.info.Node);
    const entry: NodeEntry = {
      info: structuredClone(snap.info),
      // A node's version only ever rises, even when a snapshot takes it back (replicas compare versions).
      version: Math.max(snap.version, (old?.version ?? 0) + 1),
      createIndex: snap.createIndex,
      modifyIndex: snap.modifyIndex,
      services: new Map(snap.services.map((s) => [s.ID, structuredClone(s)])),
      checks: new Map(snap.checks.map((c) => [c.CheckID, structuredClone(c)])),
    };
    this.replaceEntry(snap.info.Node, old, entry);
    for (const s of [...(old?.services.values() ?? []), ...entry.services.values()]) this.serviceIndex.set(foldName(s.Service), idx);
    this.tableIndex.nodes = this.tableIndex.services = this.tableIndex.checks = idx;
    this.feed.notify();
  }

  private indexService(node: string, s: ServiceRecord, add: boolean): void {
    indexEdit(this.byService, foldName(s.Service), node, s.ID, add);
    for (const target of connectTargets(s)) indexEdit(this.byConnect, target, node, s.ID, add);
  }

  private indexNode(node: string, entry: NodeEntry, add: boolean): void {
    for (const s of entry.services.values()) this.indexService(node, s, add);
  }

  /** Puts a whole new entry in place of a node's old one, and the name indexes with it. */
  private replaceEntry(node: string, old: NodeEntry | undefined, entry: NodeEntry): void {
    if (old) this.indexNode(node, old, false);
    this.nodes.set(node, entry);
    this.indexNode(node, entry, true);
  }

  // ---- reads ----

  getNode(name: string): NodeEntry | undefined {
    return this.nodes.get(name);
  }

  allNodes(): NodeEntry[] {
    return [...this.nodes.values()].sort((a, b) => a.info.Node.localeCompare(b.info.Node));
  }

  tableIdx(...tables: Table[]): number {
    return Math.max(...tables.map((t) => this.tableIndex[t]));
  }

  serviceIdx(name: string): number {
    return this.serviceIndex.get(foldName(name)) ?? this.tableIndex.services;
  }

  /** Every service name in the catalog (on the nodes `only` keeps) with the union of its tags. */
  serviceNames(only: (n: NodeEntry) => boolean = () => true): Map<string, string[]> {
    const out = new Map<string, Set<string>>();
    for (const n of this.allNodes().filter(only)) {
      for (const s of n.services.values()) {
        const tags = out.get(s.Service) ?? new Set<string>();
        for (const t of s.Tags) tags.add(t);
        out.set(s.Service, tags);
      }
    }
    return new Map([...out.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, [...v]]));
  }

  /** Instances of a service (its name in any case, as Consul) across nodes, in node then ID order. */
  serviceNodes(name: string, tags: string[] = []): ServiceNode[] {
    return this.lookup(this.byService, name).filter(({ service }) => !tags.some((t) => !service.Tags.includes(t)));
  }

  /** Connect-capable records serving `name` (in any case): its proxies, and the service itself if Connect-native; node then ID order. */
  connectNodes(name: string): ServiceNode[] {
    return this.lookup(this.byConnect, name);
  }

  private lookup(index: NameIndex, name: string): ServiceNode[] {
    const out: ServiceNode[] = [];
    for (const [nodeName, ids] of index.get(foldName(name)) ?? []) {
      const node = this.nodes.get(nodeName);
      if (!node) continue;
      for (const id of ids) {
        const service = node.services.get(id);
        if (service) out.push({ node, service });
      }
    }
    return out.sort((a, b) => a.node.info.Node.localeCompare(b.node.info.Node) || a.service.ID.localeCompare(b.service.ID));
  }

  /** Node-level checks plus the instance's own checks: what decides an instance's health. */
  checksForInstance(node: NodeEntry, serviceId: string): CheckRecord[] {
    return [...node.checks.values()]
      .filter((c) => c.ServiceID === '' || c.ServiceID === serviceId)
      .sort((a, b) => (a.ServiceID === '' ? 0 : 1) - (b.ServiceID === '' ? 0 : 1) || a.CheckID.localeCompare(b.CheckID));
  }

  allChecks(): CheckRecord[] {
    return this.allNodes().flatMap((n) => [...n.checks.values()].sort((a, b) => a.CheckID.localeCompare(b.CheckID)));
  }

  counts(): { nodes: number; services: number; checks: number } {
    let services = 0;
    let checks = 0;
    for (const n of this.nodes.values()) {
      services += n.services.size;
      checks += n.checks.size;
    }
    return { nodes: this.nodes.size, services, checks };
  }
}
