// Virtual IPs of mesh services: one stable address per service name from a range, derived the same way on every agent.

import { createHash } from 'node:crypto';
import { ipv4ToString, parseIpv4Range, type Ipv4Range } from '../lib/ipv4-range.js';
import { foldName } from '../model/service-names.js';
import type { ServiceRecord } from '../model/catalog-types.js';
import type { Catalog } from './catalog-store.js';

/** The address a name hashes to on its `attempt`-th try: never the range's first or last address. */
function candidate(range: Ipv4Range, name: string, attempt: number): number {
  const h = createHash('sha256').update(attempt ? `${name}\0${attempt}` : name).digest();
  return range.base + 1 + (h.readUInt32BE(0) % (range.size - 2));
}

/**
 * Each mesh service name (Connect-native, or the destination of a connect-proxy) gets the address its folded name
 * hashes to. Two names on one address: the one first in name order keeps it, the other hashes again — so an address
 * moves only when a name that collides with it appears, which in a /4 happens about once in 2^29 / n² pools.
 */
export class VirtualIps {
  private readonly range: Ipv4Range;
  private cache = { index: -1, byName: new Map<string, string>(), byIp: new Map<string, string>() };

  constructor(private readonly catalog: Catalog, cidr: string) {
    this.range = parseIpv4Range(cidr);
  }

  /** The service's virtual IP, when it is in the mesh. */
  of(name: string): string | undefined {
    return this.table().byName.get(foldName(name));
  }

  /** The virtual IP a catalog record carries: a proxy its destination's, any other record its service's. */
  ofRecord(s: ServiceRecord): string | undefined {
    return this.of(s.Kind === 'connect-proxy' && s.Proxy?.DestinationServiceName ? s.Proxy.DestinationServiceName : s.Service);
  }

  /** Every mesh service (folded name) and its virtual IP. */
  services(): ReadonlyMap<string, string> {
    return this.table().byName;
  }

  /** The mesh service (folded name) a virtual IP stands for. */
  serviceAt(ip: string): string | undefined {
    return this.table().byIp.get(ip);
  }

  private table(): VirtualIps['cache'] {
    // Recomputed when services change (not on health changes).
    const index = this.catalog.tableIdx('services');
    if (this.cache.index === index) return this.cache;
    const names = new Set<string>();
    for (const node of this.catalog.allNodes()) {
      for (const s of node.services.values()) {
        if (s.Kind === 'connect-proxy' && s.Proxy?.DestinationServiceName) names.add(foldName(s.Proxy.DestinationServiceName));
        else if (s.Connect?.Native) names.add(foldName(s.Service));
      }
    }
    const byName = new Map<string, string>();
    const taken = new Set<number>();
    // Bounded: a range of at least 2 usable addresses fills up only with more names than addresses, then names go without.
    for (const name of [...names].sort()) {
      if (taken.size >= this.range.size - 2) break;
      let attempt = 0;
      let ip = candidate(this.range, name, attempt);
      while (taken.has(ip)) ip = candidate(this.range, name, ++attempt);
      taken.add(ip);
      byName.set(name, ipv4ToString(ip));
    }
    this.cache = { index, byName, byIp: new Map([...byName].map(([n, ip]) => [ip, n])) };
    return this.cache;
  }
}
