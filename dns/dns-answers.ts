// Consul's DNS names answered from the catalog: services (tags, RFC 2782), Connect endpoints, nodes, virtual IPs.

import { isIP } from 'node:net';
import type { Answer, Question, SoaAnswer, TxtAnswer } from 'dns-packet';
import type { Catalog, ServiceNode } from '../catalog/catalog-store.js';
import type { VirtualIps } from '../catalog/virtual-ips.js';
import type { NodeEntry } from '../model/catalog-types.js';

export interface DnsSettings {
  /** The DNS domain, without dots around it (Consul: "consul"). */
  domain: string;
  datacenter: string;
  /** Leave out instances with a warning check too (Consul's dns_config.only_passing). */
  onlyPassing: boolean;
  /** TTL of service answers, seconds: by service name, "*" for every other (Consul's dns_config.service_ttl). */
  serviceTtl: Record<string, number>;
  /** TTL of node answers, seconds (Consul's dns_config.node_ttl). */
  nodeTtl: number;
}

/** What a name in the domain resolves to: answers plus additional records, or no such name. */
export interface Resolution {
  rcode: 'NOERROR' | 'NXDOMAIN';
  answers: Answer[];
  additionals: Answer[];
}

type Kind = 'service' | 'connect' | 'node' | 'virtual' | 'addr';
const KINDS = new Set<Kind>(['service', 'connect', 'node', 'virtual', 'addr']);

const NX: Resolution = { rcode: 'NXDOMAIN', answers: [], additionals: [] };

/** Consul's SOA for the domain: what NXDOMAIN and empty answers carry in their authority section. */
export function soaOf(domain: string): SoaAnswer {
  return {
    name: domain, type: 'SOA', class: 'IN', ttl: 0,
    data: { mname: `ns.${domain}`, rname: `hostmaster.${domain}`, serial: Math.floor(Date.now() / 1000) >>> 0, refresh: 3600, retry: 600, expire: 86400, minimum: 0 },
  };
}

/** Whether a name (lowercase, no trailing dot) is in the domain. */
export const inDomain = (name: string, domain: string) => name === domain || name.endsWith(`.${domain}`);

export class DnsAnswers {
  constructor(private readonly catalog: Catalog, private readonly vips: VirtualIps, private readonly s: DnsSettings) {}

  /** Resolves one question in the domain (the caller has checked it is in the domain). */
  resolve(q: Question): Resolution {
    const name = q.name.toLowerCase().replace(/\.$/, '');
    const labels = name.slice(0, name.length - this.s.domain.length).replace(/\.$/, '').split('.').filter((l) => l !== '');
    // From the right: an optional datacenter, then the kind; what is left names the thing.
    let at = labels.length - 1;
    let dc = this.s.datacenter;
    if (at >= 1 && !KINDS.has(labels[at] as Kind) && KINDS.has(labels[at - 1] as Kind)) dc = labels[at--];
    const kind = labels[at] as Kind;
    const parts = labels.slice(0, at);
    if (!KINDS.has(kind) || parts.length === 0 || dc !== this.s.datacenter) return NX;
    switch (kind) {
      case 'service': return this.service(q, parts);
      case 'connect': return parts.length === 1 ? this.endpoints(q, parts[0], this.catalog.connectNodes(parts[0])) : NX;
      case 'node': return this.node(q, parts.join('.'));
      case 'virtual': return parts.length === 1 ? this.virtual(q, parts[0]) : NX;
      case 'addr': return parts.length === 1 ? this.addr(q, parts[0]) : NX;
    }
  }

  /** `[tag.]name.service` or RFC 2782's `_name._tag.service` (`_tcp`: any tag). */
  private service(q: Question, parts: string[]): Resolution {
    let name: string;
    let tag: string | undefined;
    if (parts.length === 2 && parts[0].startsWith('_') && parts[1].startsWith('_')) {
      name = parts[0].slice(1);
      tag = parts[1] === '_tcp' ? undefined : parts[1].slice(1);
    } else if (parts.length === 1) name = parts[0];
    else if (parts.length === 2) [tag, name] = parts;
    else return NX;
    const all = this.catalog.serviceNodes(name);
    if (all.length === 0) return NX;
    // Tags match regardless of case, as Consul's DNS does.
    return this.endpoints(q, name, tag === undefined ? all : all.filter(({ service }) => service.Tags.some((t) => t.toLowerCase() === tag)));
  }

  /** Healthy instances as A/AAAA (or CNAME) records, or SRV with node or address targets and their addresses as additionals. */
  private endpoints(q: Question, service: string, instances: ServiceNode[]): Resolution {
    const ttl = this.s.serviceTtl[service] ?? this.s.serviceTtl['*'] ?? 0;
    const healthy = shuffle(instances.filter((i) => this.healthy(i)));
    const answers: Answer[] = [];
    const additionals: Answer[] = [];
    if (q.type === 'SRV') {
      for (const { node, service: s } of healthy) {
        const address = s.Address || node.info.Address;
        const target = s.Address && s.Address !== node.info.Address && isIP(s.Address)
          ? `${addrLabel(s.Address)}.addr.${this.s.datacenter}.${this.s.domain}`
          : `${node.info.Node}.node.${this.s.datacenter}.${this.s.domain}`;
        answers.push({ name: q.name, type: 'SRV', class: 'IN', ttl, data: { priority: 1, weight: weightOf(s.Weights, this.status(node, s.ID)), port: s.Port, target } });
        additionals.push(...addressRecords(target, address, ttl, 'ANY'));
        if (target.includes('.node.')) additionals.push(...this.metaTxt(target, node, ttl));
      }
      return { rcode: 'NOERROR', answers, additionals };
    }
    const seen = new Set<string>();
    for (const { node, service: s } of healthy) {
      const address = s.Address || node.info.Address;
      if (seen.has(address)) continue;
      seen.add(address);
      answers.push(...addressRecords(q.name, address, ttl, q.type));
    }
    return { rcode: 'NOERROR', answers, additionals };
  }

  private node(q: Question, name: string): Resolution {
    const node = this.catalog.allNodes().find((n) => n.info.Node.toLowerCase() === name);
    if (!node) return NX;
    const ttl = this.s.nodeTtl;
    if (q.type === 'TXT') return { rcode: 'NOERROR', answers: this.metaTxt(q.name, node, ttl), additionals: [] };
    const answers = addressRecords(q.name, node.info.Address, ttl, q.type);
    return { rcode: 'NOERROR', answers, additionals: answers.length ? this.metaTxt(q.name, node, ttl) : [] };
  }

  private virtual(q: Question, name: string): Resolution {
    const ip = this.vips.of(name);
    if (!ip) return NX;
    const ttl = this.s.serviceTtl[name] ?? this.s.serviceTtl['*'] ?? 0;
    return { rcode: 'NOERROR', answers: addressRecords(q.name, ip, ttl, q.type), additionals: [] };
  }

  /** `7f000001.addr`: the address spelled in hex (IPv4: 8 digits, IPv6: 32), as SRV targets name it. */
  private addr(q: Question, label: string): Resolution {
    let ip: string | undefined;
    if (/^[0-9a-f]{8}$/.test(label)) ip = [0, 2, 4, 6].map((i) => parseInt(label.slice(i, i + 2), 16)).join('.');
    else if (/^[0-9a-f]{32}$/.test(label)) ip = label.match(/.{4}/g)!.join(':');
    if (!ip) return NX;
    return { rcode: 'NOERROR', answers: addressRecords(q.name, ip, this.s.nodeTtl, q.type), additionals: [] };
  }

  /** Node meta as `key=value` TXT records (Consul adds them for node names). */
  private metaTxt(name: string, node: NodeEntry, ttl: number): TxtAnswer[] {
    return Object.entries(node.info.Meta ?? {}).map(([k, v]) => ({ name, type: 'TXT', class: 'IN', ttl, data: [`${k}=${v}`] }));
  }

  private status(node: NodeEntry, serviceId: string): 'passing' | 'warning' | 'critical' {
    const checks = this.catalog.checksForInstance(node, serviceId);
    if (checks.some((c) => c.Status === 'critical')) return 'critical';
    return checks.some((c) => c.Status === 'warning') ? 'warning' : 'passing';
  }

  private healthy({ node, service }: ServiceNode): boolean {
    const st = this.status(node, service.ID);
    return st === 'passing' || (st === 'warning' && !this.s.onlyPassing);
  }
}

/** A, AAAA or (for a host name) CNAME records of one address, as far as the question's type asks for them. */
function addressRecords(name: string, address: string, ttl: number, type: string): Answer[] {
  const family = isIP(address);
  if (family === 4) return type === 'A' || type === 'ANY' ? [{ name, type: 'A', class: 'IN', ttl, data: address }] : [];
  if (family === 6) return type === 'AAAA' || type === 'ANY' ? [{ name, type: 'AAAA', class: 'IN', ttl, data: address }] : [];
  return address ? [{ name, type: 'CNAME', class: 'IN', ttl, data: address }] : [];
}

/** An address as an `.addr.` label: IPv4 as 8 hex digits, IPv6 as 32. */
function addrLabel(ip: string): string {
  if (isIP(ip) === 4) return ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('');
  const [head, tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  return [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((g) => g.padStart(4, '0')).join('');
}

function weightOf(w: { Passing: number; Warning: number } | undefined, status: string): number {
  return status === 'warning' ? w?.Warning ?? 1 : w?.Passing ?? 1;
}

function shuffle<T>(list: T[]): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}
