// The data plane's manager: opens and closes public and upstream listeners as the local catalog changes, and revokes on intention changes.

import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog-store.js';
import type { ChangeFeed } from '../lib/change-feed.js';
import type { ServiceRecord } from '../model/catalog-types.js';
import type { LeafSource } from '../identity/trust-sources.js';
import { InboundListener, type Authorize, type InboundTarget, type RequestDecider } from './inbound/inbound.js';
import { UpstreamListener, type UpstreamInputs, type UpstreamSpec } from './outbound/outbound.js';
import type { ProxyMetrics } from './metrics/proxy-metrics.js';
import type { ServiceTls } from '../identity/tls-identity.js';
import { SourceLimits } from './inbound/source-limits.js';
import { TunnelPool } from './tunnel/tunnel-pool.js';
import { CoalescingRunner } from '../lib/coalescing-runner.js';
import { protocolOf, requestNormalizationOf } from '../model/config-entry.js';
import { HttpUpstreamListener } from './outbound/http-upstream.js';
import type { EntrySource } from './http/discovery-chain.js';
import { instanceIndex, type InstanceIndex } from './balance/service-instances.js';
import type { TransparentCapture } from './capture/transparent-capture.js';

/** Meta on a connect-proxy registration that leaves it to an external proxy: `"nodemesh-proxy": "external"`. */
export const EXTERNAL_PROXY_META = 'nodemesh-proxy';

/** What both kinds of upstream listener (bytes, or HTTP per request) offer the manager. */
type Upstream = UpstreamListener | HttpUpstreamListener;

export interface DataPlaneOptions {
  catalog: Catalog;
  nodeName: string;
  /** Where public listeners bind (--bind). */
  bind: string;
  tls: ServiceTls;
  leaves: LeafSource;
  authorize: Authorize;
  intentionsFeed: ChangeFeed;
  /** Fires when the trusted roots change (a CA rotation). */
  trustFeed: ChangeFeed;
  metrics: ProxyMetrics;
  log: Logger;
  /** A public listener opened: its sidecar's checks can be probed at once. */
  onListening?(proxyId: string): void;
  /** Offer the multiplexed tunnel to peer agents (default true); false: one mTLS handshake per connection. */
  tunnel?: boolean;
  /** One HTTP request under an L7 intention (the inbound side of an HTTP service). */
  decideRequest: RequestDecider;
  /** Log every L7 request as one JSON line (access_log). */
  accessLog?: boolean;
  /** Config entries (protocol, routing); without them every upstream is TCP. */
  entries?: EntrySource & { feed: ChangeFeed };
  /** Transparent capture: listeners for mesh services' virtual IPs, and the rules that send connections there. */
  capture?: TransparentCapture;
}

interface DesiredInbound { port: number; target: InboundTarget }

export class DataPlane {
  private readonly inbound = new Map<string, InboundListener>();
  private readonly outbound = new Map<string, Upstream>();
  private readonly unsubscribe: (() => void)[] = [];
  /** A failed pass is logged and the next change tries again; it never takes the agent down. */
  private readonly reconciler = new CoalescingRunner(() => this.reconcileOnce().catch((e: Error) => {
    this.o.log.error({ err: e.stack ?? e.message }, 'data plane: reconcile failed; retrying in 5s');
    this.retryLater();
  }), () => this.stopped);
  private stopped = false;
  private draining = false;
  private retryTimer?: NodeJS.Timeout;
  /** Services whose leaves the data plane asked for; dropped when their last listener goes. */
  private leafServices = new Set<string>();
  private readonly index: InstanceIndex;
  /** Pooled tunnels to other agents' public listeners, shared by every upstream listener. */
  readonly tunnels: TunnelPool;
  /** Per-source connection and handshake limits, shared by every public listener; the pool's agents pass the overall cap. */
  readonly sourceLimits = new SourceLimits((ip) => this.peerAddresses().has(ip));
  private peers = { version: -1, addrs: new Set<string>() };

  constructor(private readonly o: DataPlaneOptions) {
    this.index = instanceIndex(o.catalog);
    this.tunnels = new TunnelPool(o.tls, o.log, (source, destination, secs) => o.metrics.handshake.observe({ source, destination }, secs), o.tunnel ?? true, o.bind);
  }

  start(): Promise<void> {
    this.unsubscribe.push(this.o.catalog.feed.subscribe(() => void this.reconcile()));
    this.unsubscribe.push(this.o.intentionsFeed.subscribe(() => this.revalidate()));
    // A service left a node and its grace ran out: identities that node's intermediate vouched for it go, like a deny.
    const binding = this.o.tls.binding;
    if (binding) this.unsubscribe.push(binding.onRevoked(() => { for (const l of this.inbound.values()) l.revokeUnbound(); }));
    // A protocol change turns an upstream listener from bytes to HTTP or back.
    if (this.o.entries) this.unsubscribe.push(this.o.entries.feed.subscribe(() => void this.reconcile()));
    this.unsubscribe.push(this.o.trustFeed.subscribe(() => {
      for (const l of this.inbound.values()) l.refreshTls();
    }));
    this.unsubscribe.push(this.o.leaves.onLeaf((leaf) => {
      for (const l of this.inbound.values()) {
        if (l.service === leaf.Service) l.refreshTls();
      }
    }));
    return this.reconcile();
  }

  /** Re-decides every open inbound connection against the current intentions. */
  revalidate(): void {
    for (const l of this.inbound.values()) l.revalidate();
  }

  private localServices(): ServiceRecord[] {
    return [...(this.o.catalog.getNode(this.o.nodeName)?.services.values() ?? [])];
  }

  private desired(): { inbound: Map<string, DesiredInbound>; outbound: Map<string, UpstreamSpec> } {
    const services = this.localServices();
    const byId = new Map(services.map((s) => [s.ID, s]));
    const inbound = new Map<string, DesiredInbound>();
    const outbound = new Map<string, UpstreamSpec>();
    for (const p of services) {
      if (p.Kind !== 'connect-proxy' || !p.Proxy?.DestinationServiceName) continue;
      // A proxy of its own runs this sidecar (Consul's `consul connect proxy -sidecar-for`, Envoy): its listeners are its own.
      if (p.Meta?.[EXTERNAL_PROXY_META] === 'external') continue;
      const dest = p.Proxy.DestinationServiceName;
      const parent = p.Proxy.DestinationServiceID ? byId.get(p.Proxy.DestinationServiceID) : undefined;
      inbound.set(`${this.o.bind}:${p.Port}`, {
        port: p.Port,
        target: {
          proxyId: p.ID, service: dest, protocol: this.o.entries ? protocolOf(dest, this.o.entries.get) : 'tcp',
          normalization: this.o.entries ? requestNormalizationOf(this.o.entries.get) : undefined,
          appHost: p.Proxy.LocalServiceAddress || parent?.Address || '127.0.0.1',
          appPort: p.Proxy.LocalServicePort || parent?.Port || 0,
        },
      });
      for (const u of p.Proxy.Upstreams ?? []) {
        if (u.DestinationType !== 'service') continue;
        const bindAddress = u.LocalBindAddress || '127.0.0.1';
        const key = `${bindAddress}:${u.LocalBindPort}`;
        const node = this.o.catalog.getNode(this.o.nodeName)?.info.Address ?? '';
        const declarer = { proxyId: p.ID, sourceService: dest, address: parent?.Address || p.Address || node };
        const have = outbound.get(key);
        if (have) {
          if (have.destination !== u.DestinationName) {
            this.o.log.error({ listen: key, kept: have.destination, ignored: u.DestinationName, proxy: p.ID }, 'two upstreams declare one listener for different destinations; keeping the first');
            continue;
          }
          have.declarers.push(declarer);
          continue;
        }
        const cfg = (u.Config ?? {}) as Record<string, unknown>;
        outbound.set(key, {
          bindAddress, bindPort: u.LocalBindPort, destination: u.DestinationName,
          lb: cfg.lb === 'least_conn' ? 'least_conn' : 'round_robin',
          connectTimeoutMs: typeof cfg.connect_timeout_ms === 'number' ? cfg.connect_timeout_ms : 5000,
          declarers: [declarer],
          protocol: this.o.entries ? protocolOf(u.DestinationName, this.o.entries.get) : 'tcp',
        });
      }
    }
    if (this.o.capture) {
      const node = this.o.catalog.getNode(this.o.nodeName)?.info.Address ?? '';
      const protocol = (svc: string) => (this.o.entries ? protocolOf(svc, this.o.entries.get) : 'tcp');
      const taken = new Set([...outbound.values()].map((u) => u.bindPort));
      for (const spec of this.o.capture.specs(services, node, protocol, taken)) {
        const key = `${spec.bindAddress}:${spec.bindPort}`;
        if (!outbound.has(key)) outbound.set(key, spec);
      }
    }
    return { inbound, outbound };
  }

  /** Brings the listeners in line with the catalog; concurrent calls coalesce, and none is lost. */
  reconcile(): Promise<void> {
    return this.reconciler.run();
  }

  /** Listeners the catalog asks for that are not open (yet, or their port is taken), for readiness. */
  missingListeners(): string[] {
    if (this.stopped) return [];
    const want = this.desired();
    return [...[...want.inbound.keys()].filter((k) => !this.inbound.has(k)), ...[...want.outbound.keys()].filter((k) => !this.outbound.has(k))];
  }

  /** A listener that could not open (port taken) is tried again a little later, not only on the next change. */
  private retryLater(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.reconcile();
    }, 5000);
    this.retryTimer.unref();
  }

  /** The catalog's node addresses (other agents), rebuilt when the catalog changes. */
  private peerAddresses(): Set<string> {
    const v = this.o.catalog.index;
    if (this.peers.version !== v) this.peers = { version: v, addrs: new Set(this.o.catalog.allNodes().map((n) => n.info.Address)) };
    return this.peers.addrs;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.stopped || this.draining) return;
    const want = this.desired();
    for (const [key, l] of this.inbound) {
      const w = want.inbound.get(key);
      if (!w || w.target.service !== l.service) {
        this.inbound.delete(key);
        await l.close();
        this.o.log.info({ listen: key }, 'public listener closed');
      }
    }
    for (const [key, w] of want.inbound) {
      const have = this.inbound.get(key);
      if (have) {
        have.update(w.target);
        continue;
      }
      const l = new InboundListener({ bind: this.o.bind, port: w.port, target: w.target, tls: this.o.tls, authorize: this.o.authorize, log: this.o.log, metrics: this.o.metrics, decideRequest: this.o.decideRequest, limits: this.sourceLimits });
      try {
        await l.start();
        this.inbound.set(key, l);
        this.o.onListening?.(w.target.proxyId);
      } catch (e) {
        this.o.log.error({ listen: key, service: w.target.service, err: (e as Error).message }, 'cannot open public listener; retrying in 5s');
        this.retryLater();
      }
    }
    for (const [key, l] of this.outbound) {
      const w = want.outbound.get(key);
      if (!w || w.destination !== l.destination || listenerKind(w.protocol) !== listenerKind(l.protocol)) {
        this.outbound.delete(key);
        await l.close();
        this.o.log.info({ listen: key }, 'upstream listener closed');
      }
    }
    const upstreamInputs: UpstreamInputs = {
      tunnels: this.tunnels, instances: this.index.instances, entries: this.o.entries, log: this.o.log, metrics: this.o.metrics,
      accessLog: this.o.accessLog, localZone: () => this.o.catalog.getNode(this.o.nodeName)?.info.Meta?.zone,
    };
    for (const [key, w] of want.outbound) {
      const have = this.outbound.get(key);
      if (have) {
        have.update(w);
        continue;
      }
      const entries = this.o.entries;
      const l: Upstream = listenerKind(w.protocol) !== 'tcp' && entries
        ? new HttpUpstreamListener(w, { ...upstreamInputs, entries })
        : new UpstreamListener(w, upstreamInputs);
      try {
        await l.start();
        this.outbound.set(key, l);
      } catch (e) {
        this.o.log.error({ listen: key, destination: w.destination, err: (e as Error).message }, 'cannot open upstream listener; retrying in 5s');
        this.retryLater();
      }
    }
    this.dropUnusedLeaves();
    if (this.o.capture) {
      await this.o.capture.apply(new Set(this.outbound.keys()), this.localServices(), this.o.catalog.getNode(this.o.nodeName)?.info.Address ?? '');
    }
  }

  /** Leaves of services that no longer have a listener here stop being renewed. */
  private dropUnusedLeaves(): void {
    const used = new Set<string>();
    for (const l of this.inbound.values()) used.add(l.service);
    for (const l of this.outbound.values()) for (const s of l.sources) used.add(s);
    for (const s of this.leafServices) if (!used.has(s)) this.o.leaves.drop(s);
    this.leafServices = used;
  }

  /** Connections open on every listener (handshaking ones included), for drains and leak checks. */
  openConnections(): number {
    let n = 0;
    for (const l of this.inbound.values()) n += l.busy;
    for (const l of this.outbound.values()) n += l.busy;
    return n;
  }

  listeners(): { inbound: string[]; outbound: string[] } {
    return { inbound: [...this.inbound.keys()], outbound: [...this.outbound.keys()] };
  }

  /**
   * A drain: every listener stops accepting at once, open connections may finish for up to `timeoutMs`
   * (intentions are still enforced on them), then whatever is left is closed.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    await this.reconciler.current;
    const all = [...this.inbound.values(), ...this.outbound.values()];
    for (const l of all) l.stopAccepting();
    const busy = () => all.reduce((n, l) => n + l.busy, 0);
    const deadline = Date.now() + timeoutMs;
    if (busy() > 0) this.o.log.info({ connections: busy(), timeoutMs }, 'draining: new connections refused, open ones may finish');
    while (busy() > 0 && Date.now() < deadline && !this.stopped) await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, deadline - Date.now()))));
    if (busy() > 0) this.o.log.warn({ connections: busy() }, 'drain timeout: closing the connections still open');
    await this.stop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    for (const u of this.unsubscribe) u();
    await this.reconciler.current;
    await this.o.capture?.remove();
    await Promise.all([...this.inbound.values(), ...this.outbound.values()].map((l) => l.close()));
    this.tunnels.close();
    this.inbound.clear();
    this.outbound.clear();
  }
}

/** HTTP/1.1, HTTP/2 and gRPC services are proxied per request (one listener kind each side of the h1/h2 line); others as bytes. */
function listenerKind(protocol: string): 'http' | 'h2' | 'tcp' {
  return protocol === 'http' ? 'http' : protocol === 'http2' || protocol === 'grpc' ? 'h2' : 'tcp';
}
