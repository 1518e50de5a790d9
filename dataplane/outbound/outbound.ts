// The outbound side: an L4 upstream listener — attribute the caller to a local service, pick an instance (the resolver's subsets and failover, zones, ejection), dial it over mTLS.

import { createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { InstancePicker } from '../balance/instance-picker.js';
import type { Instance } from '../balance/service-instances.js';
import { joinSockets } from '../pipe/byte-pipe.js';
import { callPolicy, compileChain, pickTarget, type CallPolicy, type EntrySource, type Target } from '../http/discovery-chain.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import { closeListener } from '../../lib/close-server.js';
import type { TunnelPool } from '../tunnel/tunnel-pool.js';
import type { TunnelStream } from '../tunnel/tunnel-session.js';

export interface UpstreamDeclarer {
  /** The connect-proxy registration that declares the upstream. */
  proxyId: string;
  /** The service connections from this declarer act as. */
  sourceService: string;
  /** The instance's address, used to tell declarers apart by source IP. */
  address: string;
}

export interface UpstreamSpec {
  bindAddress: string;
  bindPort: number;
  destination: string;
  lb: 'round_robin' | 'least_conn';
  connectTimeoutMs: number;
  declarers: UpstreamDeclarer[];
  /** The destination's protocol by config entries: tcp is proxied as bytes, http per request. */
  protocol: string;
}

export type { Endpoint } from '../tunnel/tunnel-pool.js';
import type { Endpoint } from '../tunnel/tunnel-pool.js';
import { listenServer } from '../../lib/listen-server.js';

const MAX_ATTEMPTS = 3;

export const isLoopbackAddress = (a: string) => a.startsWith('127.') || a === '::1' || a === 'localhost';
export const plainIp = (a: string | undefined) => (a ?? '').replace(/^::ffff:/, '');

/** Who is calling an upstream listener, from the declaring services: the one loopback owner, or source address → service. */
export class UpstreamAttribution {
  private owner: string | undefined;
  private byAddress = new Map<string, string | null>();
  private declarers: UpstreamDeclarer[] = [];

  update(spec: UpstreamSpec): void {
    this.declarers = spec.declarers;
    const services = new Set(spec.declarers.map((d) => d.sourceService));
    this.owner = services.size === 1 && isLoopbackAddress(spec.bindAddress) ? [...services][0] : undefined;
    this.byAddress = new Map();
    for (const d of spec.declarers) {
      const have = this.byAddress.get(d.address);
      // Two services behind one address cannot be told apart: that address is refused.
      this.byAddress.set(d.address, have === undefined || have === d.sourceService ? d.sourceService : null);
    }
  }

  get sources(): string[] {
    return [...new Set(this.declarers.map((d) => d.sourceService))];
  }

  /**
   * Who is calling: on a loopback listener declared by one service, that service; otherwise the
   * declaring instance whose address is the connection's source IP.
   */
  sourceOf(remote: string | undefined): string | undefined {
    return this.owner ?? this.byAddress.get(plainIp(remote)) ?? undefined;
  }
}

/** The byte path takes only instances whose every check passes (as /v1/health/connect/:name?passing), failover included. */
const passingOnly = (t: Target, lb: string): Target => ({ ...t, onlyPassing: true, lbPolicy: t.lbPolicy || lb, failover: t.failover.map((f) => passingOnly(f, lb)) });

/** What an upstream listener (bytes or HTTP) needs besides its spec. */
export interface UpstreamInputs {
  /** Pooled tunnels to other agents' public listeners. */
  tunnels: TunnelPool;
  /** A destination's instances, from the catalog. */
  instances: (service: string) => Instance[];
  /** Config entries (protocol, routing); without them every upstream is TCP. */
  entries: EntrySource | undefined;
  log: Logger;
  metrics: ProxyMetrics;
  /** One JSON log line per request (access_log; HTTP only). */
  accessLog?: boolean;
  /** The caller's zone (this node's meta "zone"), for zone-aware instance choice. */
  localZone?: () => string | undefined;
}

export class UpstreamListener {
  private server?: Server;
  private readonly sockets = new Set<{ destroy(): void }>();
  private readonly picker: InstancePicker;
  private chain?: { index: number; routes: ReturnType<typeof compileChain>; policy: CallPolicy };

  private readonly tunnels: TunnelPool;
  /** Config entries: the destination's resolver (subsets, redirect, failover, load balancer) applies to bytes too. */
  private readonly entries: EntrySource | undefined;
  private readonly log: Logger;
  private readonly metrics: ProxyMetrics;

  constructor(spec: UpstreamSpec, io: UpstreamInputs) {
    ({ tunnels: this.tunnels, entries: this.entries, log: this.log, metrics: this.metrics } = io);
    this.spec = spec;
    this.update(spec);
    this.picker = new InstancePicker(io.instances, io.localZone ?? (() => undefined), (key, forMs) => this.log.warn({ destination: spec.destination, instance: key, forMs }, 'instance ejected after consecutive failures (outlier detection)'));
  }

  /** The destination's target by its resolver (and its outlier detection), recompiled when config entries change. */
  private target(): { wanted: Target; policy: CallPolicy } | undefined {
    const index = this.entries?.index ?? 0;
    if (this.chain?.index !== index || !this.chain) {
      const get = this.entries?.get ?? (() => undefined);
      const d = this.spec.destination;
      try {
        this.chain = { index, routes: compileChain(d, get), policy: callPolicy(d, get) };
      } catch (e) {
        this.log.error({ destination: d, err: (e as Error).message }, 'cannot compile the resolver; using the plain service');
        this.chain = { index, routes: compileChain(d, () => undefined), policy: callPolicy(d, () => undefined) };
      }
    }
    // A TCP service has no router or splitter: its one route is the default, to the resolver's target.
    const t = pickTarget(this.chain.routes[this.chain.routes.length - 1].targets);
    return t && { wanted: passingOnly(t, this.spec.lb === 'least_conn' ? 'least_request' : ''), policy: this.chain.policy };
  }

  private spec: UpstreamSpec;

  get key(): string {
    return `${this.spec.bindAddress}:${this.spec.bindPort}`;
  }

  get destination(): string {
    return this.spec.destination;
  }

  private readonly attribution = new UpstreamAttribution();

  update(spec: UpstreamSpec): void {
    this.spec = spec;
    this.attribution.update(spec);
  }

  get sources(): string[] {
    return this.attribution.sources;
  }

  get protocol(): string {
    return 'tcp';
  }

  async start(): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => void this.accept(s));
    await listenServer(server, this.spec.bindPort, this.spec.bindAddress);
    server.on('error', (e) => this.log.error({ err: e.message, listen: this.key }, 'upstream listener error'));
    this.server = server;
    this.log.info({ listen: this.key, destination: this.spec.destination, sources: this.spec.declarers.map((d) => d.sourceService) }, 'upstream listener open');
  }

  sourceOf(remote: string): string | undefined {
    return this.attribution.sourceOf(remote);
  }

  private async accept(client: Socket): Promise<void> {
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    client.on('error', () => client.destroy());
    const destination = this.spec.destination;
    const remote = plainIp(client.remoteAddress);
    const source = this.sourceOf(remote);
    if (!source) {
      this.metrics.denied.inc({ direction: 'outbound', source: 'unknown', destination, reason: 'attribution' });
      this.log.warn({ listen: this.key, peer: remote, destination }, 'outbound connection refused: source address belongs to no declaring service');
      client.destroy();
      return;
    }
    const labels = { direction: 'outbound' as const, source, destination };
    const { wanted, policy } = this.target() ?? {};
    const tried = new Set<string>();
    let upstream: TunnelStream | TLSSocket | undefined;
    let picked: { target: Target; inst: Instance } | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS && wanted; attempt++) {
      const got = this.picker.pickAny(wanted, tried);
      if (!got || !policy) break;
      if (!got) break;
      tried.add(got.inst.key);
      if (client.destroyed) return;
      try {
        upstream = await this.dial(got.inst.endpoint, source, got.target.service);
        picked = got;
        this.picker.outcome(got.target, got.inst, false, policy);
        break;
      } catch (e) {
        this.picker.outcome(got.target, got.inst, true, policy);
        this.log.warn({ ...labels, endpoint: `${got.inst.endpoint.host}:${got.inst.endpoint.port}`, err: (e as Error).message }, 'outbound: dial failed, trying the next instance');
      }
    }
    if (tried.size === 0) {
      this.metrics.denied.inc({ ...labels, reason: 'no_endpoint' });
      this.log.warn(labels, 'outbound: no healthy instance of the destination');
      client.destroy();
      return;
    }
    if (!upstream || !picked) {
      this.metrics.denied.inc({ ...labels, reason: 'dial_failed' });
      client.destroy();
      return;
    }
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    const done = this.picker.started(picked.inst);
    this.sockets.add(upstream);
    const closed = this.metrics.connectionOpened(labels);
    const up = upstream;
    joinSockets(client, up, ({ fromA, fromB }) => {
      this.sockets.delete(up);
      done();
      closed(fromA, fromB);
    });
  }

  /** A stream on the pooled tunnel to that agent, or an mTLS connection of its own for a peer without the tunnel. */
  private dial(ep: Endpoint, source: string, destination: string): Promise<TunnelStream | TLSSocket> {
    // The upstream's own connect timeout (its Config), as before the resolver applied to bytes.
    return this.tunnels.open(ep, source, destination, this.spec.connectTimeoutMs);
  }

  /** Sockets still open (workload side and tunnels), for a drain. */
  get busy(): number {
    return this.sockets.size;
  }

  /** Stops taking new connections; open ones carry on (a drain). */
  stopAccepting(): void {
    this.server?.close();
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await closeListener(server, this.sockets);
  }
}
