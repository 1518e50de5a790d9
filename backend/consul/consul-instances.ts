// Upstream instances from Consul (/v1/health/connect/:service?passing, one blocking query per destination), written into the local catalog as the nodes Consul reports, so the data plane picks endpoints as in gossip mode.

import type { Catalog } from '../../catalog/catalog-store.js';
import type { CheckRecord, NodeInfo, ServiceRecord } from '../../model/catalog-types.js';
import { BlockingWatch } from './blocking-watch.js';
import type { ConsulHttp } from './consul-http.js';

/** Meta key on every registration nodemesh makes in Consul: which nodemesh agent owns it. */
export const META_OWNER = 'nodemesh-node';

interface HealthEntry {
  Node: NodeInfo & Record<string, unknown>;
  Service: ServiceRecord;
  Checks: CheckRecord[];
}

export class ConsulInstances {
  private readonly watches = new Map<string, BlockingWatch<HealthEntry[]>>();
  /** Each watched destination's last answer. */
  private readonly entries = new Map<string, HealthEntry[]>();
  /** Nodes this mirror wrote into the catalog (never the local node). */
  private readonly written = new Set<string>();
  private version = 0;

  constructor(
    private readonly http: ConsulHttp,
    private readonly catalog: Catalog,
    private readonly localNode: string,
    private readonly onError: (e: Error) => void,
    private readonly onOk: () => void,
  ) {}

  /** The destinations the local sidecars have upstreams to: watched from now on; others are dropped. */
  follow(destinations: Set<string>): void {
    for (const [name, w] of this.watches) {
      if (destinations.has(name)) continue;
      w.stop();
      this.watches.delete(name);
      this.entries.delete(name);
      this.rewrite();
    }
    for (const name of destinations) {
      if (this.watches.has(name)) continue;
      this.watches.set(name, new BlockingWatch<HealthEntry[]>(this.http, {
        path: `/health/connect/${encodeURIComponent(name)}`,
        query: { passing: '1' },
        onData: (list) => {
          this.onOk();
          this.entries.set(name, Array.isArray(list) ? list : []);
          this.rewrite();
        },
        // Unreachable: the last answer stays (instances known before keep taking connections).
        onError: this.onError,
      }));
    }
  }

  /** The upstream destinations of the local node's sidecars. */
  static destinationsOf(catalog: Catalog, localNode: string): Set<string> {
    const out = new Set<string>();
    for (const s of catalog.getNode(localNode)?.services.values() ?? []) {
      if (s.Kind !== 'connect-proxy') continue;
      for (const u of s.Proxy?.Upstreams ?? []) if ((u.DestinationType || 'service') === 'service') out.add(u.DestinationName);
    }
    return out;
  }

  /** Folds every destination's entries into per-node snapshots and applies the ones that changed. */
  private rewrite(): void {
    const nodes = new Map<string, { info: NodeInfo; services: Map<string, ServiceRecord>; checks: Map<string, CheckRecord> }>();
    for (const list of this.entries.values()) {
      for (const e of list) {
        const name = e.Node?.Node;
        // Our own registrations are in the catalog already, as local services.
        if (!name || name === this.localNode || e.Service?.Meta?.[META_OWNER] === this.localNode) continue;
        let n = nodes.get(name);
        if (!n) {
          const info: NodeInfo = {
            ID: String(e.Node.ID ?? ''), Node: name, Address: String(e.Node.Address ?? ''), Datacenter: String(e.Node.Datacenter ?? ''),
            TaggedAddresses: (e.Node.TaggedAddresses ?? {}) as NodeInfo['TaggedAddresses'], Meta: (e.Node.Meta ?? {}) as NodeInfo['Meta'],
          };
          nodes.set(name, (n = { info, services: new Map(), checks: new Map() }));
        }
        n.services.set(e.Service.ID, { ...e.Service, Tags: e.Service.Tags ?? [], Meta: e.Service.Meta ?? {} });
        for (const c of e.Checks ?? []) n.checks.set(c.CheckID, c);
      }
    }
    for (const [name, n] of nodes) {
      const old = this.catalog.getNode(name);
      const same = old && JSON.stringify(old.info) === JSON.stringify(n.info) &&
        JSON.stringify([...old.services.values()].map(({ CreateIndex: _c, ModifyIndex: _m, ...s }) => s)) === JSON.stringify([...n.services.values()].map(({ CreateIndex: _c, ModifyIndex: _m, ...s }) => s)) &&
        JSON.stringify([...old.checks.values()].map((c) => [c.CheckID, c.Status, c.ServiceID])) === JSON.stringify([...n.checks.values()].map((c) => [c.CheckID, c.Status, c.ServiceID]));
      if (same) continue;
      this.catalog.applyRemote({
        info: n.info, version: ++this.version + (old?.version ?? 0), createIndex: 0, modifyIndex: 0,
        services: [...n.services.values()], checks: [...n.checks.values()],
      });
      this.written.add(name);
    }
    for (const name of [...this.written]) {
      if (nodes.has(name)) continue;
      this.catalog.removeNode(name);
      this.written.delete(name);
    }
  }

  poke(): void {
    for (const w of this.watches.values()) w.poke();
  }

  stop(): void {
    for (const w of this.watches.values()) w.stop();
    this.watches.clear();
  }
}
