// An upstream listener for an HTTP service: HTTP/1.1 or HTTP/2 (h2c) from the workload, each request through the one L7 pipeline to an instance over the mTLS tunnel; WebSocket upgrades routed, then carried as bytes.

import { STATUS_CODES, createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createH2Server } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { requestNormalizationOf } from '../../model/config-entry.js';
import { normalizedUrl, type PathOptions } from '../../model/request-path.js';
import { closeListener } from '../../lib/close-server.js';
import { InstanceGates } from '../balance/instance-gate.js';
import { InstancePicker } from '../balance/instance-picker.js';
import { hashKeyOf } from '../balance/request-hash.js';
import { joinSockets, type PipeEnd } from '../pipe/byte-pipe.js';
import { isXfcc } from '../http/client-cert-header.js';
import { callPolicy, compileChain, pickTarget, type CallPolicy, type CompiledRoute, type EntrySource } from '../http/discovery-chain.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { TunnelPool } from '../tunnel/tunnel-pool.js';
import { H1Transport } from './h1-transport.js';
import { h1Exchange } from './h1-exchange.js';
import { H2Transport } from './h2-transport.js';
import { h2Exchange } from './h2-exchange.js';
import { L7Pipeline } from './l7-pipeline.js';
import { UpstreamAttribution, type UpstreamInputs, type UpstreamSpec } from './outbound.js';
import { listenServer } from '../../lib/listen-server.js';

/** Instances tried after connect failures, per upgrade. */
const MAX_CONNECT_ATTEMPTS = 3;

export class HttpUpstreamListener {
  private server?: Server;
  private spec: UpstreamSpec;
  private readonly attribution = new UpstreamAttribution();
  private chain?: { index: number; routes: CompiledRoute[]; policy: CallPolicy };
  private readonly open = new Set<Duplex>();
  private readonly picker: InstancePicker;
  private readonly transport: H1Transport | H2Transport;
  private readonly pipeline: L7Pipeline;

  private readonly tunnels: TunnelPool;
  private readonly entries: EntrySource;
  private readonly log: Logger;
  private readonly metrics: ProxyMetrics;

  constructor(spec: UpstreamSpec, io: UpstreamInputs & { entries: EntrySource }) {
    ({ tunnels: this.tunnels, entries: this.entries, log: this.log, metrics: this.metrics } = io);
    const accessLog = io.accessLog ?? false;
    this.spec = spec;
    this.update(spec);
    this.picker = new InstancePicker(io.instances, io.localZone ?? (() => undefined), (key, forMs) => this.log.warn({ destination: spec.destination, instance: key, forMs }, 'instance ejected after consecutive failures (outlier detection)'));
    // HTTP/2 and gRPC: h2c (prior knowledge) from the workload, h2 over the tunnel to the instance.
    this.transport = this.h2 ? new H2Transport(this.tunnels, this.picker) : new H1Transport(this.tunnels, new InstanceGates(), this.picker);
    this.pipeline = new L7Pipeline({
      destination: spec.destination,
      routing: () => this.compiled(),
      pathOptions: () => this.pathOptions(),
      sourceOf: (address) => this.attribution.sourceOf(address),
    }, this.transport, this.picker, this.log, this.metrics, accessLog);
  }

  get key(): string {
    return `${this.spec.bindAddress}:${this.spec.bindPort}`;
  }

  get destination(): string {
    return this.spec.destination;
  }

  get protocol(): string {
    return this.spec.protocol;
  }

  get sources(): string[] {
    return this.attribution.sources;
  }

  update(spec: UpstreamSpec): void {
    this.spec = spec;
    this.attribution.update(spec);
  }

  private get h2(): boolean {
    return this.spec.protocol === 'http2' || this.spec.protocol === 'grpc';
  }

  async start(): Promise<void> {
    const server = this.h2 ? this.h2Server() : createServer({ keepAlive: true }, (req, res) => void this.pipeline.serve(h1Exchange(req, res)));
    server.on('connection', (s: Duplex) => {
      this.open.add(s);
      s.once('close', () => this.open.delete(s));
    });
    server.on('clientError', (_e, socket) => socket.destroy());
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.upgrade(req, socket, head));
    await listenServer(server, this.spec.bindPort, this.spec.bindAddress);
    server.on('error', (e) => this.log.error({ err: e.message, listen: this.key }, 'upstream listener error'));
    this.server = server;
    this.log.info({ listen: this.key, destination: this.spec.destination, protocol: this.spec.protocol, sources: this.sources }, 'HTTP upstream listener open');
  }

  private h2Server(): Server {
    const server = createH2Server();
    server.on('stream', (stream, headers) => void this.pipeline.serve(h2Exchange(stream, headers, stream.session?.socket?.remoteAddress)));
    server.on('sessionError', () => undefined);
    return server as unknown as Server;
  }

  private normalization?: { index: number; path: PathOptions };

  /** The mesh entry's path normalization, read again only when config entries change (not once per request). */
  private pathOptions(): PathOptions {
    if (this.normalization?.index !== this.entries.index) this.normalization = { index: this.entries.index, path: requestNormalizationOf(this.entries.get).path };
    return this.normalization.path;
  }

  /** The compiled chain and call policy, recompiled when config entries change. */
  private compiled(): { routes: CompiledRoute[]; policy: CallPolicy } {
    if (this.chain?.index !== this.entries.index) {
      const d = this.spec.destination;
      try {
        this.chain = { index: this.entries.index, routes: compileChain(d, this.entries.get), policy: callPolicy(d, this.entries.get) };
      } catch (e) {
        this.log.error({ destination: d, err: (e as Error).message }, 'cannot compile the routing config; using the plain service');
        this.chain = { index: this.entries.index, routes: compileChain(d, () => undefined), policy: callPolicy(d, () => undefined) };
      }
    }
    return this.chain;
  }

  /**
   * An upgrade (WebSocket): routed like a request, then the request head goes to the instance as it came and
   * the two connections are joined — the instance's 101 and every frame after it pass through as bytes.
   */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const source = this.attribution.sourceOf(req.socket.remoteAddress);
    const refuse = (status: number, why: string) => {
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(why) + 1}\r\n\r\n${why}\n`);
    };
    if (!source) return refuse(403, 'nodemesh: this address belongs to no service that declared the upstream');
    const url = normalizedUrl(req.url ?? '/', this.pathOptions());
    if ('error' in url) return refuse(400, `bad request: ${url.error}`);
    const { routes } = this.compiled();
    const route = routes.find((r) => r.match({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers }))!;
    const wanted = pickTarget(route.targets);
    const tried = new Set<string>();
    for (let attempt = 0; attempt < MAX_CONNECT_ATTEMPTS && wanted; attempt++) {
      const got = this.picker.pickAny(wanted, tried, hashKeyOf(wanted, req.headers, req.socket.remoteAddress, url));
      if (!got) break;
      const { inst, target } = got;
      tried.add(inst.key);
      let up: Duplex;
      try {
        up = await this.tunnels.open(inst.endpoint, source, target.service, target.connectTimeoutMs);
      } catch {
        continue;
      }
      if (socket.destroyed) return void up.destroy();
      const lines = [`${req.method} ${url.pathname}${url.search} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) if (!isXfcc(req.rawHeaders[i])) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) up.write(head);
      this.open.add(up);
      up.once('close', () => this.open.delete(up));
      this.metrics.observeRequest({ direction: 'outbound', source, destination: this.spec.destination, destinationService: target.service, destinationSubset: target.subset ?? '', route: route.name, method: req.method ?? 'GET', status: 101 });
      return joinSockets(socket as PipeEnd, up as PipeEnd);
    }
    refuse(503, `no healthy upstream for ${wanted ? wanted.service : this.spec.destination}`);
  }

  get busy(): number {
    return this.open.size;
  }

  stopAccepting(): void {
    this.server?.close();
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.transport.close();
    await closeListener(server, this.open);
  }
}
