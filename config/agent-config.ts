// The agent's configuration: its keys, their types and checks, and the defaults dev mode changes.

import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { NodemeshError } from '../lib/errors.js';
import { parseGoDuration } from '../lib/go-duration.js';
import { parseIpv4Range } from '../lib/ipv4-range.js';
import { parseIpPort } from '../lib/ip-port.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface AgentConfig {
  dev: boolean;
  node: string;
  datacenter: string;
  dataDir: string | undefined;
  bind: string;
  client: string;
  httpPort: number;
  logLevel: LogLevel;
  logJson: boolean | undefined;
  aclToken: string | undefined;
  /** Raw service definitions from config files, validated like API bodies. */
  services: Record<string, unknown>[];
  checkReapIntervalMs: number;
  checkDeregisterIntervalMinMs: number;
  /** `allow` in dev, `deny` otherwise, unless set. */
  defaultIntentionPolicy: 'allow' | 'deny' | undefined;
  /** What a request without the token may read: `allow` when the API listens on loopback, `deny` otherwise, unless set. */
  aclDefaultPolicy: 'allow' | 'deny' | undefined;
  leafCertTtlMs: number;
  caFile: string | undefined;
  caKeyFile: string | undefined;
  /** Extra roots to trust (PEM bundle), e.g. the next root before a rotation. */
  caTrustedRootsFile: string | undefined;
  /** Gossip (UDP+TCP) port; 0 picks a free one. */
  serfLanPort: number;
  join: string[];
  retryJoin: string[];
  /** Gossip encryption key, base64 of 16, 24 or 32 bytes. */
  encrypt: string | undefined;
  /** Multiplex connections to other agents over pooled mTLS tunnels (false: one handshake per connection). */
  dataPlaneTunnel: boolean;
  /** On SIGTERM or leave, how long open data-plane connections may finish before they are closed. */
  drainTimeoutMs: number;
  /** After a graceful leave, rejoin the previous members on the next start anyway. */
  rejoinAfterLeave: boolean;
  /** How long a failed node stays in the catalog (critical) before it is forgotten. */
  reconnectTimeoutMs: number;
  /** Consul backend: catalog, CA and intentions from this Consul agent (http://host:port) instead of the gossip pool. */
  consulAddr: string | undefined;
  /** Token for the Consul backend's calls. */
  consulToken: string | undefined;
  /** Log each HTTP request through an upstream listener (source, destination, route, status, ms, traceparent). */
  accessLog: boolean;
  /** Node metadata (Consul's node_meta), e.g. {"zone": "eu-1a"}: the zone makes L7 routing prefer instances in it. */
  nodeMeta: Record<string, string>;
  /** Protections a non-dev agent may start without, each named on purpose (logged as a warning at every start). */
  waive: Waiver[];
  /** A policy writer's credential (`nodemesh ca issue-policy`): this agent signs intentions and config entries for the pool. */
  policyCertFile: string | undefined;
  policyKeyFile: string | undefined;
  /** The token a policy write needs (distinct from a node's acl_token); without it, acl_token serves. */
  operatorToken: string | undefined;
  /** Where a policy writer takes writes forwarded by other agents (TLS, its policy certificate); 0 picks a free port. */
  policyPort: number;
  /**
   * How long a leaf signed by a node's intermediate stays good for a service after the catalog stops listing it on
   * that node (default 10 s, see identity-binding.ts). No config key: tests shorten it.
   */
  identityGraceMs?: number;
  /** DNS, UDP and TCP; -1 turns it off, 0 picks a free port. */
  dnsPort: number;
  /** Where DNS listens (Consul's addresses.dns); the client address unless set. */
  dnsAddr: string | undefined;
  /** Where names outside `domain` go (IP or IP:port, tried in turn); without any they are refused. */
  recursors: string[];
  /** The DNS domain answered from the catalog (Consul: "consul"). */
  domain: string;
  dnsConfig: DnsConfig;
  /**
   * The peer endpoint (mTLS between agents: each serves its edges so any agent can show the pool's); 0 (the default)
   * picks a free port, advertised to the pool; -1 turns it off. On the bind address.
   */
  peerPort: number;
  /** A read-only Prometheus listener (plain HTTP, GET /metrics only) for scrapers; -1 (the default) turns it off. */
  metricsPort: number;
  /** Where the metrics listener binds (the node IP for a cluster's Prometheus); the client address unless set. */
  metricsAddr: string | undefined;
  /** The range mesh services' virtual IPs come from (Consul: 240.0.0.0/4). */
  virtualIpRange: string;
  /** Transparent capture of this node's workloads (nftables); undefined: off. */
  transparentProxy: TransparentProxyConfig | undefined;
}

/** What `transparent_proxy` sets: capture mode, listener ports, exclusions. */
export interface TransparentProxyConfig {
  /** strict: a guarded workload takes connections only through the mesh; permissive: others are counted and let through. */
  mode: 'strict' | 'permissive';
  /** Transparent listeners take ports from here up, one per mesh service. */
  portBase: number;
  excludeOutboundPorts: number[];
  excludeInboundPorts: number[];
}

const TPROXY_KEYS = ['mode', 'port_base', 'exclude_outbound_ports', 'exclude_inbound_ports'];

/** Consul's dns_config, as far as nodemesh's DNS takes it. */
export interface DnsConfig {
  /** Leave out instances with a warning check too. */
  onlyPassing: boolean;
  /** TTL of node answers, seconds. */
  nodeTtlS: number;
  /** TTL of service answers, seconds, by service name; "*" for the others. */
  serviceTtlS: Record<string, number>;
  /** Most records in a UDP answer to a query without EDNS. */
  udpAnswerLimit: number;
  /** Set TC on a UDP answer that was cut. */
  enableTruncate: boolean;
}

const DNS_CONFIG_KEYS = ['only_passing', 'node_ttl', 'service_ttl', 'udp_answer_limit', 'enable_truncate'];

/** What `waive` may name: a gossip key, an ACL token, the shared CA files. */
export const WAIVERS = ['gossip_key', 'acl_token', 'ca_files'] as const;
export type Waiver = typeof WAIVERS[number];

export const configError = (message: string) => new NodemeshError('CONFIG_INVALID', message, 2);

type Kind = 'bool' | 'string' | 'url' | 'meta' | 'port' | 'ip' | 'loglevel' | 'duration' | 'name' | 'datacenter' | 'policy' | 'leafttl' | 'addrs' | 'key' | 'waivers'
  | 'portoff' | 'recursors' | 'domain' | 'dnsconfig' | 'cidr' | 'tproxy';

/** Config keys (snake_case, as in files) → their kind and the AgentConfig field they set. */
export const CONFIG_KEYS: Record<string, { kind: Kind; field: keyof AgentConfig }> = {
  dev: { kind: 'bool', field: 'dev' },
  node: { kind: 'name', field: 'node' },
  node_name: { kind: 'name', field: 'node' },
  datacenter: { kind: 'datacenter', field: 'datacenter' },
  data_dir: { kind: 'string', field: 'dataDir' },
  bind: { kind: 'ip', field: 'bind' },
  bind_addr: { kind: 'ip', field: 'bind' },
  client: { kind: 'ip', field: 'client' },
  client_addr: { kind: 'ip', field: 'client' },
  http_port: { kind: 'port', field: 'httpPort' },
  log_level: { kind: 'loglevel', field: 'logLevel' },
  log_json: { kind: 'bool', field: 'logJson' },
  acl_token: { kind: 'string', field: 'aclToken' },
  check_reap_interval: { kind: 'duration', field: 'checkReapIntervalMs' },
  check_deregister_interval_min: { kind: 'duration', field: 'checkDeregisterIntervalMinMs' },
  default_intention_policy: { kind: 'policy', field: 'defaultIntentionPolicy' },
  acl_default_policy: { kind: 'policy', field: 'aclDefaultPolicy' },
  leaf_cert_ttl: { kind: 'leafttl', field: 'leafCertTtlMs' },
  ca_file: { kind: 'string', field: 'caFile' },
  ca_key_file: { kind: 'string', field: 'caKeyFile' },
  ca_trusted_roots_file: { kind: 'string', field: 'caTrustedRootsFile' },
  serf_lan_port: { kind: 'port', field: 'serfLanPort' },
  join: { kind: 'addrs', field: 'join' },
  retry_join: { kind: 'addrs', field: 'retryJoin' },
  encrypt: { kind: 'key', field: 'encrypt' },
  reconnect_timeout: { kind: 'duration', field: 'reconnectTimeoutMs' },
  rejoin_after_leave: { kind: 'bool', field: 'rejoinAfterLeave' },
  drain_timeout: { kind: 'duration', field: 'drainTimeoutMs' },
  data_plane_tunnel: { kind: 'bool', field: 'dataPlaneTunnel' },
  consul_addr: { kind: 'url', field: 'consulAddr' },
  consul_token: { kind: 'string', field: 'consulToken' },
  access_log: { kind: 'bool', field: 'accessLog' },
  node_meta: { kind: 'meta', field: 'nodeMeta' },
  waive: { kind: 'waivers', field: 'waive' },
  policy_cert_file: { kind: 'string', field: 'policyCertFile' },
  policy_key_file: { kind: 'string', field: 'policyKeyFile' },
  operator_token: { kind: 'string', field: 'operatorToken' },
  policy_port: { kind: 'port', field: 'policyPort' },
  dns_port: { kind: 'portoff', field: 'dnsPort' },
  dns_addr: { kind: 'ip', field: 'dnsAddr' },
  recursors: { kind: 'recursors', field: 'recursors' },
  domain: { kind: 'domain', field: 'domain' },
  dns_config: { kind: 'dnsconfig', field: 'dnsConfig' },
  metrics_port: { kind: 'portoff', field: 'metricsPort' },
  peer_port: { kind: 'portoff', field: 'peerPort' },
  metrics_addr: { kind: 'ip', field: 'metricsAddr' },
  virtual_ip_range: { kind: 'cidr', field: 'virtualIpRange' },
  transparent_proxy: { kind: 'tproxy', field: 'transparentProxy' },
};

const LOG_LEVELS: Record<string, LogLevel> = { trace: 'trace', debug: 'debug', info: 'info', warn: 'warn', err: 'error', error: 'error' };

/**
 * Checks one value and converts it. `fromFlag` values arrive as strings (or booleans) and may be
 * converted; file values must already have the right JSON type.
 */
export function convertValue(key: string, value: unknown, where: string, fromFlag: boolean): unknown {
  const spec = CONFIG_KEYS[key];
  const bad = (want: string) => configError(`invalid value for "${key}" in ${where}: ${JSON.stringify(value)} (${want})`);
  switch (spec.kind) {
    case 'bool':
      if (typeof value === 'boolean') return value;
      if (fromFlag && (value === 'true' || value === 'false')) return value === 'true';
      throw bad('must be true or false');
    case 'string':
      if (typeof value !== 'string') throw bad('must be a string');
      return value;
    case 'meta': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('must be an object of strings, e.g. {"zone": "eu-1a"}');
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length > 64 || entries.some(([k, v]) => typeof v !== 'string' || !/^[a-zA-Z0-9_-]{1,128}$/.test(k) || (v as string).length > 512)) {
        throw bad('keys of letters, digits, "_" and "-" (at most 128), string values (at most 512), at most 64 pairs');
      }
      return Object.fromEntries(entries);
    }
    case 'url':
      if (typeof value !== 'string' || !/^(https?:\/\/)?[^\s/:]+(:\d{1,5})?\/?$/.test(value)) throw bad('must be an address such as http://127.0.0.1:8500');
      return /^https?:\/\//.test(value) ? value.replace(/\/$/, '') : `http://${value.replace(/\/$/, '')}`;
    case 'name':
      if (typeof value !== 'string' || value === '' || value.length > 128 || /[\s\x00-\x1f/]/.test(value)) {
        throw bad('must be 1-128 characters, no spaces, slashes or control characters');
      }
      return value;
    case 'datacenter':
      if (typeof value !== 'string' || !/^[a-z0-9_-]+$/.test(value)) throw bad('must be lowercase letters, digits, "_" and "-"');
      return value;
    case 'ip':
      if (typeof value !== 'string' || isIP(value) === 0) throw bad('must be an IP address, e.g. 127.0.0.1');
      return value;
    case 'port': {
      const n = typeof value === 'number' ? value : fromFlag && typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw bad('must be an integer between 0 and 65535; 0 picks a free port');
      return n;
    }
    case 'loglevel': {
      const l = typeof value === 'string' ? LOG_LEVELS[value.toLowerCase()] : undefined;
      if (!l) throw bad('must be one of trace, debug, info, warn, error');
      return l;
    }
    case 'addrs': {
      const list = typeof value === 'string' ? [value] : value;
      if (!Array.isArray(list) || list.some((a) => typeof a !== 'string' || !/^[^\s:]+(:\d{1,5})?$/.test(a))) throw bad('must be host or host:port addresses');
      return list;
    }
    case 'waivers': {
      const list = typeof value === 'string' ? [value] : value;
      if (!Array.isArray(list) || list.some((w) => !(WAIVERS as readonly unknown[]).includes(w))) throw bad(`must name protections to go without: ${WAIVERS.join(', ')}`);
      return [...new Set(list)];
    }
    case 'key': {
      const k = typeof value === 'string' ? Buffer.from(value, 'base64') : Buffer.alloc(0);
      if (typeof value !== 'string' || ![16, 24, 32].includes(k.length) || k.toString('base64') !== value) throw bad('must be base64 of 16, 24 or 32 bytes (make one with `nodemesh keygen`)');
      return value;
    }
    case 'policy':
      if (value !== 'allow' && value !== 'deny') throw bad('must be "allow" or "deny"');
      return value;
    case 'portoff': {
      const n = typeof value === 'number' ? value : fromFlag && typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : NaN;
      if (!Number.isInteger(n) || n < -1 || n > 65535) throw bad('must be an integer between 0 and 65535, or -1 to turn it off; 0 picks a free port');
      return n;
    }
    case 'recursors': {
      const list = typeof value === 'string' ? [value] : value;
      if (!Array.isArray(list) || list.length > 16 || !list.every((a) => typeof a === 'string' && parseIpPort(a, 53))) throw bad('must be IP addresses with an optional port, e.g. ["127.0.0.53", "[::1]:53"] (at most 16)');
      return list;
    }
    case 'domain':
      if (typeof value !== 'string' || !/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$/i.test(value) || value.length > 200) {
        throw bad('must be a DNS name such as "consul"');
      }
      return value.toLowerCase().replace(/\.$/, '');
    case 'cidr':
      if (typeof value !== 'string') throw bad('must be an IPv4 CIDR such as "240.0.0.0/4"');
      parseIpv4Range(value, `value for "${key}" in ${where}:`);
      return value;
    case 'dnsconfig':
      return dnsConfigOf(value, bad);
    case 'tproxy':
      return transparentProxyOf(value, bad);
    case 'leafttl': {
      let ms = NaN;
      try { ms = typeof value === 'string' ? parseGoDuration(value) : NaN; } catch { /* reported below */ }
      if (!(ms >= 60_000 && ms <= 8760 * 3_600_000)) throw bad('must be a duration between 1m and 8760h, e.g. "72h"');
      return ms;
    }
    case 'duration': {
      if (typeof value !== 'string') throw bad('must be a duration string such as "30s"');
      try {
        const ms = parseGoDuration(value);
        if (ms <= 0) throw configError('must be positive');
        return ms;
      } catch (e) {
        throw bad(`must be a positive duration such as "30s": ${(e as Error).message}`);
      }
    }
  }
}

/** Consul's dns_config object: known keys only, each checked. */
function dnsConfigOf(value: unknown, bad: (want: string) => NodemeshError): DnsConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`must be an object with ${DNS_CONFIG_KEYS.join(', ')}`);
  const out = defaultConfig().dnsConfig;
  const seconds = (v: unknown, what: string) => {
    try {
      if (typeof v !== 'string') throw configError('not a string');
      const ms = parseGoDuration(v);
      if (ms < 0 || ms > 86_400_000) throw configError('out of range');
      return Math.floor(ms / 1000);
    } catch {
      throw bad(`${what} must be a duration from "0s" to "24h"`);
    }
  };
  for (const [k, v] of Object.entries(value)) {
    if (k === 'only_passing' || k === 'enable_truncate') {
      if (typeof v !== 'boolean') throw bad(`${k} must be true or false`);
      if (k === 'only_passing') out.onlyPassing = v;
      else out.enableTruncate = v;
    } else if (k === 'node_ttl') out.nodeTtlS = seconds(v, k);
    else if (k === 'service_ttl') {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length > 1024) throw bad('service_ttl must be an object of service name (or "*") to duration');
      out.serviceTtlS = Object.fromEntries(Object.entries(v).map(([n, d]) => [n.toLowerCase(), seconds(d, `service_ttl.${n}`)]));
    } else if (k === 'udp_answer_limit') {
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 64) throw bad('udp_answer_limit must be an integer from 1 to 64');
      out.udpAnswerLimit = v as number;
    } else throw bad(`unknown key "${k}" (known: ${DNS_CONFIG_KEYS.join(', ')})`);
  }
  return out;
}

/** `transparent_proxy`: {} turns capture on in strict mode; known keys only, each checked. */
function transparentProxyOf(value: unknown, bad: (want: string) => NodemeshError): TransparentProxyConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`must be an object with ${TPROXY_KEYS.join(', ')} ({} turns capture on)`);
  const out: TransparentProxyConfig = { mode: 'strict', portBase: 15100, excludeOutboundPorts: [], excludeInboundPorts: [] };
  const ports = (v: unknown, k: string) => {
    if (!Array.isArray(v) || v.length > 256 || v.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw bad(`${k} must be a list of ports from 1 to 65535 (at most 256)`);
    return [...new Set(v as number[])];
  };
  for (const [k, v] of Object.entries(value)) {
    if (k === 'mode') {
      if (v !== 'strict' && v !== 'permissive') throw bad('mode must be "strict" or "permissive"');
      out.mode = v;
    } else if (k === 'port_base') {
      if (!Number.isInteger(v) || (v as number) < 1024 || (v as number) > 64535) throw bad('port_base must be an integer from 1024 to 64535 (a thousand ports above it are used)');
      out.portBase = v as number;
    } else if (k === 'exclude_outbound_ports') out.excludeOutboundPorts = ports(v, k);
    else if (k === 'exclude_inbound_ports') out.excludeInboundPorts = ports(v, k);
    else throw bad(`unknown key "${k}" (known: ${TPROXY_KEYS.join(', ')})`);
  }
  return out;
}

/** The configuration before files and flags are applied. */
export function defaultConfig(): AgentConfig {
  return {
    dev: false,
    node: hostname(),
    datacenter: 'dc1',
    dataDir: undefined,
    bind: '',
    client: '127.0.0.1',
    httpPort: 8500,
    logLevel: 'info',
    logJson: undefined,
    aclToken: undefined,
    services: [],
    checkReapIntervalMs: 30_000,
    checkDeregisterIntervalMinMs: 60_000,
    defaultIntentionPolicy: undefined,
    aclDefaultPolicy: undefined,
    leafCertTtlMs: 72 * 3_600_000,
    caFile: undefined,
    caKeyFile: undefined,
    caTrustedRootsFile: undefined,
    serfLanPort: 8301,
    join: [],
    retryJoin: [],
    encrypt: undefined,
    reconnectTimeoutMs: 72 * 3_600_000,
    rejoinAfterLeave: false,
    drainTimeoutMs: 20_000,
    dataPlaneTunnel: true,
    consulAddr: undefined,
    consulToken: undefined,
    accessLog: false,
    nodeMeta: {},
    waive: [],
    policyCertFile: undefined,
    policyKeyFile: undefined,
    operatorToken: undefined,
    policyPort: 8300,
    dnsPort: 8600,
    dnsAddr: undefined,
    recursors: [],
    domain: 'consul',
    dnsConfig: { onlyPassing: false, nodeTtlS: 0, serviceTtlS: {}, udpAnswerLimit: 3, enableTruncate: false },
    metricsPort: -1,
    peerPort: 0,
    metricsAddr: undefined,
    virtualIpRange: '240.0.0.0/4',
    transparentProxy: undefined,
  };
}

export const isLoopback = (addr: string) => addr === '::1' || /^127\./.test(addr) || addr === 'localhost';
