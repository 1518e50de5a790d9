// Connect-capable instances of a service with what subset filters read (the instance's meta and tags, its node's meta), cached per catalog change.

import type { Catalog } from '../../catalog/catalog-store.js';
import { foldName } from '../../model/service-names.js';
import type { ServiceRecord } from '../../model/catalog-types.js';
import type { Endpoint } from '../tunnel/tunnel-pool.js';

export interface Instance {
  endpoint: Endpoint;
  /** "host:port", for per-instance state (round robin, outlier ejection). */
  key: string;
  /** The destination service's own registration (a sidecar's parent), else the connect-native service. */
  service: ServiceRecord;
  nodeMeta: Record<string, string>;
  /** Every check of the instance (its sidecar's and its node's) passes. */
  passing: boolean;
  /** No check is critical: warning counts as healthy unless a subset says OnlyPassing. */
  healthy: boolean;
}

export interface InstanceIndex {
  /** Every connect-capable instance of the service, with its health. */
  instances(service: string): Instance[];
}

/** Computed once per catalog change and service rather than once per connection or request. */
export function instanceIndex(catalog: Catalog): InstanceIndex {
  let index = -1;
  const all = new Map<string, Instance[]>();
  const fresh = () => {
    if (catalog.index === index) return;
    all.clear();
    index = catalog.index;
  };
  // Keyed by the folded name: an upstream to `API` reaches the instances of `api`, as Consul's lookups do.
  const instances = (service: string) => {
    fresh();
    const key = foldName(service);
    let list = all.get(key);
    if (!list) all.set(key, (list = scan(catalog, key)));
    return list;
  };
  return { instances };
}

function scan(catalog: Catalog, name: string): Instance[] {
  const out: Instance[] = [];
  for (const { node, service: s } of catalog.connectNodes(name)) {
    const viaProxy = s.Kind === 'connect-proxy';
    const parent = viaProxy && s.Proxy?.DestinationServiceID ? node.services.get(s.Proxy.DestinationServiceID) : undefined;
    const checks = catalog.checksForInstance(node, s.ID);
    const host = s.Address || node.info.Address;
    out.push({
      endpoint: { host, port: s.Port }, key: `${host}:${s.Port}`, service: parent ?? s, nodeMeta: node.info.Meta ?? {},
      passing: checks.every((c) => c.Status === 'passing'),
      healthy: checks.every((c) => c.Status === 'passing' || c.Status === 'warning'),
    });
  }
  return out;
}
