// An upstream listener for an HTTP service: each request is routed (router → splitter → resolver), sent to an instance over the mTLS tunnel on a pooled keep-alive stream, retried within a budget, and timed out.

import { createHash } from 'node:crypto';
import { Agent, STATUS_CODES, createServer, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { connect as h2connect, constants as h2, createServer as createH2Server, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders as H2Headers, type ServerHttp2Stream } from 'node:http2';
import { HOP_BY_HOP, joinSockets, type PipeEnd } from '../byte-pipe.js';
import { isXfcc, stripXfcc } from '../http/client-cert-header.js';
import { closeListener } from '../../lib/close-server.js';
import { UpstreamAttribution, type UpstreamSpec } from './outbound.js';
import type { ProxyMetrics } from '../proxy-metrics.js';
import type { Endpoint, TunnelPool } from '../tunnel/tunnel-pool.js';
import { callPolicy, compileChain, pickTarget, type CallPolicy, type CompiledRoute, type EntryLookup, type Target } from '../http/discovery-chain.js';
import { OutlierDetector } from '../balance/outlier-detection.js';
import { RetryBudget } from '../http/retry-budget.js';
import type { Instance } from '../balance/service-instances.js';
import { nextTraceparent } from '../http/trace-context.js';
import { GRPC_AS_HTTP, HTTP_AS_GRPC, readUpTo, stripPseudo } from '../http/h2-streams.js';
import { InstanceGates } from '../balance/instance-gate.js';
import { ProxyAnswer } from '../http/proxy-answer.js';
import { hashKeyOf } from '../balance/request-hash.js';
import { normalizedUrl } from '../../model/request-path.js';
import { requestNormalizationOf } from '../../model/config-entry.js';

/** Request bodies up to this size are kept so the request can be retried; larger ones stream and are not retried. */
const MAX_RETRY_BODY = 64 * 1024;
/** HTTP/1.1 connections per instance and caller unless the resolver's Nodemesh.Limits.MaxConnections says otherwise. */
const DEFAULT_MAX_CONNECTIONS = 512;
/** HTTP/2 sessions kept per instance and caller. */
const H2_SESSIONS_PER_INSTANCE = 4;
/** Instances tried after connect failures, per request. */
const MAX_CONNECT_ATTEMPTS = 3;

export interface EntrySource { readonly index: number; get: EntryLookup }

const codeClass = (status: number) => `${Math.floor(status / 100)}xx`;

export class HttpUpstreamListener {
  private server?: Server;
  private spec: UpstreamSpec;
  private readonly attribution = new UpstreamAttribution();
  private chain?: { index: number; routes: CompiledRoute[]; policy: CallPolicy };
  /** Requests in flight to the destination (circuit breaking), and the local rate limit's bucket. */
  private active = 0;
  private bucket = { tokens: 0, at: 0, perSecond: 0 };
  private readonly agents = new Map<string, Agent>();
  private readonly rr = new Map<string, number>();
  private readonly budget = new RetryBudget();
  private readonly outliers: OutlierDetector;
  private readonly open = new Set<Duplex>();

  constructor(
    spec: UpstreamSpec,
    private readonly tunnels: TunnelPool,
    private readonly instances: (service: string) => Instance[],
    private readonly entries: EntrySource,
    private readonly log: Logger,
    private readonly metrics: ProxyMetrics,
    /** One JSON log line per request (access_log). */
    private readonly accessLog = false,
    /** The caller's zone (this node's meta "zone"), for zone-aware instance choice. */
    private readonly localZone: () => string | undefined = () => undefined,
  ) {
    this.spec = spec;
    this.update(spec);
    this.outliers = new OutlierDetector((key, forMs) => this.log.warn({ destination: spec.destination, instance: key, forMs }, 'instance ejected after consecutive failures (outlier detection)'));
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

  /** HTTP/2 and gRPC: h2c (prior knowledge) from the workload, h2 over the tunnel to the instance. */
  private get h2(): boolean {
    return this.spec.protocol === 'http2' || this.spec.protocol === 'grpc';
  }

  async start(): Promise<void> {
    const server = this.h2 ? this.h2Server() : createServer({ keepAlive: true }, (req, res) => void this.handle(req, res));
    server.on('connection', (s: Duplex) => {
      this.open.add(s);
      s.once('close', () => this.open.delete(s));
    });
    server.on('clientError', (_e, socket) => socket.destroy());
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.upgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.spec.bindPort, this.spec.bindAddress, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.log.error({ err: e.message, listen: this.key }, 'upstream listener error'));
    this.server = server;
    this.log.info({ listen: this.key, destination: this.spec.destination, protocol: this.spec.protocol, sources: this.sources }, 'HTTP upstream listener open');
  }

  private h2Server(): Server {
    const server = createH2Server();
    server.on('stream', (stream, headers) => void this.handleH2(stream, headers));
    server.on('sessionError', () => undefined);
    return server as unknown as Server;
  }

  private readonly h2Sessions = new Map<string, Promise<ClientHttp2Session>>();

  private h2Turn = 0;
  /** The caller of each workload-side HTTP/2 connection, attributed once per connection. */
  private readonly h2Sources = new WeakMap<object, string | undefined>();

  /**
   * HTTP/2 sessions per (source, destination service, instance), each on its own tunnel stream, shared by the
   * requests spread over them (one session alone would cap at the peer's stream limit and one stream's window).
   */
  private h2SessionFor(source: string, service: string, ep: Endpoint, connectTimeoutMs: number): Promise<ClientHttp2Session> {
    const k = `${source}\0${service}\0${ep.host}:${ep.port}\0${this.h2Turn++ % H2_SESSIONS_PER_INSTANCE}`;
    let p = this.h2Sessions.get(k);
    if (!p) {
      p = this.tunnels.open(ep, source, service, connectTimeoutMs).then((stream) => {
        const session = h2connect(`http://${service}`, { createConnection: () => stream });
        const forget = () => { if (this.h2Sessions.get(k) === p) this.h2Sessions.delete(k); };
        session.once('close', forget);
        session.once('error', forget);
        session.once('goaway', forget);
        return session;
      });
      p.catch(() => { if (this.h2Sessions.get(k) === p) this.h2Sessions.delete(k); });
      this.h2Sessions.set(k, p);
    }
    return p;
  }

  /** One HTTP/2 request (a gRPC call): routed like HTTP/1.1, streamed both ways, trailers carried. */
  private async handleH2(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    const started = process.hrtime.bigint();
    const destination = this.spec.destination;
    const session0 = stream.session;
    let source = session0 ? this.h2Sources.get(session0) : undefined;
    if (session0 && source === undefined) {
      source = this.attribution.sourceOf(session0.socket?.remoteAddress);
      this.h2Sources.set(session0, source);
    }
    stream.on('error', () => undefined);
    let routeName = 'none';
    const finish = (status: number) => {
      const labels = { source: source ?? 'unknown', destination, route: routeName };
      this.metrics.requests.inc({ ...labels, code_class: codeClass(status) });
      this.metrics.requestMs.observe(labels, Number(process.hrtime.bigint() - started) / 1e6);
    };
    const grpcCall = String(headers['content-type'] ?? '').startsWith('application/grpc');
    const answer = (status: number, message: string) => {
      if (stream.destroyed) return;
      if (grpcCall && !stream.headersSent) {
        // A gRPC client reads errors from grpc-status: a trailers-only answer, as a gRPC server would give.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(HTTP_AS_GRPC[status] ?? 2), 'grpc-message': encodeURIComponent(message), 'x-nodemesh-error': message.slice(0, 200) }, { endStream: true });
        return finish(status);
      }
      if (!stream.headersSent) stream.respond({ ':status': status, 'content-type': 'text/plain', 'x-nodemesh-error': message.slice(0, 200) });
      stream.end(`${message}\n`);
      finish(status);
    };
    if (!source) return answer(403, 'nodemesh: this address belongs to no service that declared the upstream');
    const url = normalizedUrl(String(headers[':path'] ?? '/'), this.pathOptions());
    if ('error' in url) return answer(400, `bad request: ${url.error}`);
    const { routes, policy } = this.compiled();
    const route = routes.find((r) => r.match({ method: String(headers[':method'] ?? 'GET'), path: url.pathname, query: url.searchParams, headers }))!;
    routeName = route.name;
    if (!this.admit(policy)) return answer(429, 'local rate limit exceeded');
    if (policy.maxConcurrentRequests > 0 && this.active >= policy.maxConcurrentRequests) return answer(503, 'upstream overflow');
    this.active++;
    stream.once('close', () => { this.active--; });
    const wanted = pickTarget(route.targets);
    if (!wanted) return answer(503, `no healthy upstream for ${destination}`);
    // A retry sends the request again: a short request that has ended (a unary gRPC call) is kept for it.
    const body = route.numRetries > 0 ? await readUpTo(stream, MAX_RETRY_BODY) : undefined;
    const tried = new Set<string>();
    const deadline = Date.now() + route.timeoutMs;
    let retriesLeft = route.numRetries;
    let connectTries = 0;
    const labels = { source, destination, route: route.name };
    for (let attempt = 0; ; attempt++) {
      // A retry prefers an instance not tried yet, and takes a tried one when there is no other.
      const got = this.pickAny(wanted, tried) ?? (attempt > 0 ? this.pickAny(wanted, new Set()) : undefined);
      if (!got) return answer(503, `no healthy upstream for ${wanted.service}${wanted.subset ? `/${wanted.subset}` : ''}`);
      const { inst, target } = got;
      tried.add(inst.key);
      const resendable = body === undefined || body.ended;
      let session: ClientHttp2Session;
      try {
        session = await this.h2SessionFor(source, target.service, inst.endpoint, target.connectTimeoutMs);
      } catch (e) {
        this.outcome(target, inst, true, policy);
        if (resendable && connectTries++ < MAX_CONNECT_ATTEMPTS - 1) continue;
        return answer(503, `upstream connect error: ${(e as Error).message}`);
      }
      const out: H2Headers = {};
      for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k) && v !== undefined && k !== ':authority') out[k] = v;
      // Only the callee's agent says who called (from the verified peer): a caller's own X-Forwarded-Client-Cert goes no further.
      stripXfcc(out);
      out[':authority'] = headers[':authority'] ?? target.service;
      out[':path'] = url.pathname + url.search; // what was routed is what is sent
      if (route.prefixRewrite && url.pathname.startsWith(route.prefixRewrite.from)) {
        out[':path'] = (route.prefixRewrite.to + url.pathname.slice(route.prefixRewrite.from.length)).replace(/^\/\//, '/') + url.search;
      }
      out.traceparent = nextTraceparent(headers.traceparent);
      let up: ReturnType<ClientHttp2Session['request']>;
      try {
        up = session.request(out);
      } catch (e) {
        if (resendable && connectTries++ < MAX_CONNECT_ATTEMPTS - 1) continue;
        return answer(503, `upstream connect error: ${(e as Error).message}`);
      }
      let trailers: IncomingHttpHeaders | undefined;
      up.on('trailers', (t) => { trailers = t; });
      if (body?.ended) up.end(Buffer.concat(body.chunks));
      else {
        for (const c of body?.chunks ?? []) up.write(c);
        stream.pipe(up);
      }
      const head = await new Promise<{ h?: IncomingHttpHeaders; err?: Error }>((resolve) => {
        const timer = setTimeout(() => resolve({ err: new ProxyAnswer(504, 'upstream request timeout') }), Math.max(0, deadline - Date.now()));
        timer.unref();
        up.once('response', (h) => { clearTimeout(timer); resolve({ h }); });
        up.once('error', (err) => { clearTimeout(timer); resolve({ err }); });
        up.once('close', () => { clearTimeout(timer); resolve({ err: new Error(`stream closed (code ${up.rstCode ?? 0})`) }); });
      });
      if (!head.h) {
        up.close(h2.NGHTTP2_CANCEL);
        if (head.err instanceof ProxyAnswer) return answer(head.err.status, head.err.message);
        this.outcome(target, inst, true, policy);
        if (body?.ended && connectTries++ < MAX_CONNECT_ATTEMPTS - 1 && this.budgetAllows(labels)) {
          this.metrics.retries.inc({ ...labels, reason: 'connect' });
          continue;
        }
        return stream.headersSent ? stream.close(h2.NGHTTP2_INTERNAL_ERROR) : answer(502, `upstream error: ${head.err?.message}`);
      }
      const status = Number(head.h[':status'] ?? 502);
      // A gRPC error arrives as trailers-only (grpc-status already in the headers, HTTP 200): its grpc-status
      // stands for the HTTP code retries name.
      const grpcStatus = Number(head.h['grpc-status'] ?? NaN);
      const effective = GRPC_AS_HTTP[grpcStatus] ?? status;
      this.outcome(target, inst, effective >= 500, policy);
      if (route.retryOn.has(effective) && retriesLeft > 0 && body?.ended && this.budgetAllows(labels)) {
        retriesLeft--;
        up.close(h2.NGHTTP2_CANCEL);
        this.metrics.retries.inc({ ...labels, reason: 'status' });
        await sleep(Math.min(25 * 2 ** attempt * (0.5 + Math.random()), Math.max(0, deadline - Date.now())));
        continue;
      }
      const resp: H2Headers = {};
      for (const [k, v] of Object.entries(head.h)) if (!HOP_BY_HOP.has(k) && v !== undefined) resp[k] = v;
      if (stream.destroyed) return void up.close(h2.NGHTTP2_CANCEL);
      const timer = setTimeout(() => { up.close(h2.NGHTTP2_CANCEL); stream.close(h2.NGHTTP2_CANCEL); }, Math.max(0, deadline - Date.now()));
      timer.unref();
      up.once('close', () => clearTimeout(timer));
      up.on('error', () => { if (!stream.destroyed) stream.close(h2.NGHTTP2_INTERNAL_ERROR); });
      stream.once('close', () => { if (!up.closed) up.close(h2.NGHTTP2_CANCEL); });
      // A trailers-only answer (a gRPC error: grpc-status already in the headers) ends with its headers; anything
      // else may end with trailers.
      if (up.endAfterHeaders || !Number.isNaN(grpcStatus)) {
        stream.respond(resp, { endStream: true });
      } else {
        stream.respond(resp, { waitForTrailers: true });
        // No trailers came: an empty trailing HEADERS frame ends the stream cleanly (close() would reset it).
        stream.once('wantTrailers', () => stream.sendTrailers(trailers ? stripPseudo(trailers) : {}));
        up.pipe(stream);
      }
      return finish(status);
    }
  }

  /** How paths are normalized before routing: the mesh entry's request normalization. */
  private pathOptions() {
    return requestNormalizationOf(this.entries.get).path;
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

  /** The local rate limit (token bucket): whether this request may go. */
  private admit(policy: CallPolicy): boolean {
    const rl = policy.rateLimit;
    if (!rl) return true;
    const now = Date.now();
    if (this.bucket.perSecond !== rl.perSecond) this.bucket = { tokens: rl.burst, at: now, perSecond: rl.perSecond };
    this.bucket.tokens = Math.min(rl.burst, this.bucket.tokens + ((now - this.bucket.at) / 1000) * rl.perSecond);
    this.bucket.at = now;
    if (this.bucket.tokens < 1) return false;
    this.bucket.tokens -= 1;
    return true;
  }

  /** Requests in flight per instance, for least_request. */
  private readonly activeByInstance = new Map<string, number>();

  /** The target's instance for this request, or — when it has no healthy one — one of its failover targets'. */
  private pickAny(target: Target, tried: Set<string>, hashKey?: string): { target: Target; inst: Instance } | undefined {
    for (const t of [target, ...target.failover]) {
      const inst = this.pick(t, tried, hashKey);
      if (inst) return { target: t, inst };
    }
    return undefined;
  }

  /** The next instance of the target for this request (by its load-balancing policy), skipping ones already tried. */
  private pick(target: Target, tried: Set<string>, hashKey?: string): Instance | undefined {
    const matching = this.instances(target.service).filter((i) => (target.onlyPassing ? i.passing : i.healthy) && target.filter({ service: i.service, nodeMeta: i.nodeMeta }));
    // Zone-aware: instances in the caller's zone (node meta "zone") first, others only when it has none left.
    const zone = this.localZone();
    const local = zone ? matching.filter((i) => i.nodeMeta.zone === zone && !tried.has(i.key) && !this.outliers.ejected(i.key)) : [];
    const all = local.length ? local : matching;
    const fresh = all.filter((i) => !tried.has(i.key));
    // Ejected instances only when nothing else is left (a panic threshold of all).
    const live = fresh.filter((i) => !this.outliers.ejected(i.key));
    const left = live.length ? live : fresh;
    if (left.length === 0) return undefined;
    if (hashKey !== undefined) {
      // Consistent hashing by rendezvous (highest random weight): a key keeps its instance while that instance
      // stays, and only the keys of an instance that goes move. ring_hash and maglev both use it here.
      let best = left[0];
      let bestScore = '';
      for (const i of left) {
        const score = createHash('sha1').update(`${hashKey}\0${i.key}`).digest('hex');
        if (score > bestScore) { bestScore = score; best = i; }
      }
      return best;
    }
    if (target.lbPolicy === 'random') return left[Math.floor(Math.random() * left.length)];
    if (target.lbPolicy === 'least_request' && left.length > 1) {
      // Power of two choices: the less loaded of two random instances.
      const x = left[Math.floor(Math.random() * left.length)];
      let y = left[Math.floor(Math.random() * (left.length - 1))];
      if (y === x) y = left[left.length - 1];
      return (this.activeByInstance.get(x.key) ?? 0) <= (this.activeByInstance.get(y.key) ?? 0) ? x : y;
    }
    const k = `${target.service}/${target.subset}`;
    const n = this.rr.get(k) ?? 0;
    this.rr.set(k, n + 1);
    return left[n % left.length];
  }

  /** A keep-alive pool of tunnel streams per (source, destination service, instance). */
  private agentFor(source: string, service: string, ep: Endpoint, connectTimeoutMs: number, maxConnections = 0): Agent {
    const k = `${source}\0${service}\0${ep.host}:${ep.port}`;
    let a = this.agents.get(k);
    if (a) a.maxSockets = maxConnections || DEFAULT_MAX_CONNECTIONS;
    if (!a) {
      a = new Agent({ keepAlive: true, maxSockets: maxConnections || DEFAULT_MAX_CONNECTIONS, maxFreeSockets: 64, scheduling: 'lifo' });
      const tunnels = this.tunnels;
      // node:http asks for a socket; a tunnel stream (or an mTLS socket to a peer without the tunnel) is one.
      (a as unknown as { createConnection: unknown }).createConnection = (_o: unknown, cb: (e: Error | null, s?: Duplex) => void) => {
        tunnels.open(ep, source, service, connectTimeoutMs).then((s) => cb(null, s), (e: Error) => cb(e));
        return undefined;
      };
      this.agents.set(k, a);
    }
    return a;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const destination = this.spec.destination;
    const source = this.attribution.sourceOf(req.socket.remoteAddress);
    let routeName = 'none';
    const finish = (status: number) => {
      const labels = { source: source ?? 'unknown', destination, route: routeName };
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      this.metrics.requests.inc({ ...labels, code_class: codeClass(status) });
      this.metrics.requestMs.observe(labels, ms);
      if (this.accessLog) this.log.info({ access: true, ...labels, method: req.method, path: req.url, status, ms: Math.round(ms * 100) / 100, traceparent: req.headers.traceparent }, 'request');
    };
    if (!source) {
      this.metrics.denied.inc({ direction: 'outbound', source: 'unknown', destination, reason: 'attribution' });
      res.writeHead(403, { 'content-type': 'text/plain' }).end('nodemesh: this address belongs to no service that declared the upstream\n');
      return finish(403);
    }
    this.budget.deposit();
    try {
      const url = normalizedUrl(req.url ?? '/', this.pathOptions());
      if ('error' in url) throw new ProxyAnswer(400, `bad request: ${url.error}`);
      const { routes, policy } = this.compiled();
      const route = routes.find((r) => r.match({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers }))!;
      routeName = route.name;
      if (!this.admit(policy)) throw new ProxyAnswer(429, 'local rate limit exceeded');
      if (policy.maxConcurrentRequests > 0 && this.active >= policy.maxConcurrentRequests) {
        this.metrics.denied.inc({ direction: 'outbound', source, destination, reason: 'overflow' });
        throw new ProxyAnswer(503, `upstream overflow: ${this.active} requests in flight (MaxConcurrentRequests ${policy.maxConcurrentRequests})`);
      }
      this.active++;
      try {
        const fault = route.fault;
        if (fault && Math.random() * 100 < fault.abortPercent) throw new ProxyAnswer(fault.abortStatus, 'fault filter abort');
        if (fault && fault.delayMs > 0 && Math.random() * 100 < fault.delayPercent) await sleep(fault.delayMs);
        finish(await this.forward(req, res, route, source, url, policy));
      } finally {
        this.active--;
      }
    } catch (e) {
      const a = e instanceof ProxyAnswer ? e : new ProxyAnswer(502, `upstream error: ${(e as Error).message}`);
      if (!res.headersSent) res.writeHead(a.status, { 'content-type': 'text/plain', 'x-nodemesh-error': a.message.slice(0, 200) }).end(`${a.message}\n`);
      else res.destroy();
      finish(a.status);
    }
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
      const got = this.pickAny(wanted, tried, hashKeyOf(wanted, req, url));
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
      this.metrics.requests.inc({ source, destination: this.spec.destination, route: route.name, code_class: '1xx' });
      return joinSockets(socket as PipeEnd, up as PipeEnd);
    }
    refuse(503, `no healthy upstream for ${wanted ? wanted.service : this.spec.destination}`);
  }

  /** Feeds outlier detection with an attempt's outcome. */
  private outcome(target: Target, inst: Instance, failed: boolean, policy: CallPolicy): void {
    if (!failed) return this.outliers.success(inst.key);
    const peers = this.instances(target.service).filter((i) => target.filter({ service: i.service, nodeMeta: i.nodeMeta }));
    this.outliers.failure(inst.key, peers.length, peers.filter((i) => this.outliers.ejected(i.key)).length, policy.outlier);
  }

  /** A copy of the request to the mirror's instance: fire and forget, its answer and errors dropped. */
  private mirror(target: Target, source: string, method: string, path: string, headers: OutgoingHttpHeaders, body: Buffer): void {
    const inst = this.pick(target, new Set());
    if (!inst) return;
    const host = String(headers.host ?? target.service);
    this.send(inst, target, source, method, path, { ...headers, host: `${host}-shadow` }, body, 10_000)
      .then((up) => up.resume(), () => undefined);
  }

  /** Sends the request (with retries) and streams the answer back; resolves with the status the caller got. */
  private async forward(req: IncomingMessage, res: ServerResponse, route: CompiledRoute, source: string, url: URL, policy: CallPolicy): Promise<number> {
    const declared = Number(req.headers['content-length'] ?? (req.headers['transfer-encoding'] ? Infinity : 0));
    const wantsRetry = route.numRetries > 0 || route.retryOnConnectFailure || route.mirror !== undefined;
    const body = wantsRetry && declared <= MAX_RETRY_BODY ? await readAll(req) : undefined;
    let path = url.pathname + url.search;
    if (route.prefixRewrite && url.pathname.startsWith(route.prefixRewrite.from)) {
      path = (route.prefixRewrite.to + url.pathname.slice(route.prefixRewrite.from.length)).replace(/^\/\//, '/') + url.search;
    }
    const headers: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    // Only the callee's agent says who called (from the verified peer): a caller's own X-Forwarded-Client-Cert goes no further.
    stripXfcc(headers);
    headers.traceparent = nextTraceparent(req.headers.traceparent);
    if (route.mirror && body !== undefined && Math.random() * 100 < route.mirror.percent) this.mirror(route.mirror.target, source, req.method ?? 'GET', path, headers, body);
    const deadline = Date.now() + route.timeoutMs;
    const tried = new Set<string>();
    let retriesLeft = route.numRetries;
    let connectTries = 0;
    const labels = { source, destination: this.spec.destination, route: route.name };
    for (let attempt = 0; ; attempt++) {
      const wanted = pickTarget(route.targets);
      // A retry prefers an instance not tried yet, and takes a tried one when there is no other.
      const got = wanted && (this.pickAny(wanted, tried, hashKeyOf(wanted, req, url)) ?? (attempt > 0 ? this.pickAny(wanted, new Set(), hashKeyOf(wanted, req, url)) : undefined));
      if (!wanted || !got) throw new ProxyAnswer(503, `no healthy upstream for ${wanted ? `${wanted.service}${wanted.subset ? `/${wanted.subset}` : ''}` : this.spec.destination}`);
      const { target, inst } = got;
      tried.add(inst.key);
      const left = deadline - Date.now();
      if (left <= 0) throw new ProxyAnswer(504, 'upstream request timeout');
      let up: IncomingMessage;
      try {
        up = await this.send(inst, target, source, req.method ?? 'GET', path, headers, body ?? req, left, policy);
      } catch (e) {
        if (e instanceof ProxyAnswer) throw e;
        this.outcome(target, inst, true, policy);
        // Nothing reached the instance (or it reset before answering): another instance may do, if the body can be sent again.
        const resendable = body !== undefined || declared === 0;
        if (resendable && connectTries < MAX_CONNECT_ATTEMPTS - 1 && this.budgetAllows(labels)) {
          connectTries++;
          this.metrics.retries.inc({ ...labels, reason: 'connect' });
          continue;
        }
        throw new ProxyAnswer(503, `upstream connect error: ${(e as Error).message}`);
      }
      const status = up.statusCode ?? 502;
      this.outcome(target, inst, status >= 500, policy);
      if (route.retryOn.has(status) && retriesLeft > 0 && body !== undefined && this.budgetAllows(labels)) {
        retriesLeft--;
        up.resume();
        this.metrics.retries.inc({ ...labels, reason: 'status' });
        await sleep(Math.min(25 * 2 ** attempt * (0.5 + Math.random()), Math.max(0, deadline - Date.now())));
        continue;
      }
      const out: OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
      res.writeHead(status, up.statusMessage, out);
      await new Promise<void>((resolve) => {
        up.pipe(res);
        up.once('end', resolve);
        up.once('error', () => { res.destroy(); resolve(); });
        res.once('close', () => { up.destroy(); resolve(); });
      });
      return status;
    }
  }

  /** Whether one more retry fits the budget; counts a refusal. */
  private budgetAllows(labels: { source: string; destination: string; route: string }): boolean {
    const ok = this.budget.withdraw();
    if (!ok) this.metrics.retries.inc({ ...labels, reason: 'budget' });
    return ok;
  }

  /** Per instance: connections in use under MaxConnections, and requests waiting for one. */
  private readonly gates = new InstanceGates();

  /** One attempt: resolves with the response head, rejects on connect failure; a timeout answers 504. */
  private async send(inst: Instance, target: Target, source: string, method: string, path: string, headers: OutgoingHttpHeaders, body: Buffer | IncomingMessage, timeoutMs: number, policy?: CallPolicy): Promise<IncomingMessage> {
    const release = await this.gates.acquire(inst.key, policy?.maxConnections ?? 0, policy?.maxPendingRequests ?? 0, timeoutMs);
    return new Promise((resolve, reject) => {
      const agent = this.agentFor(source, target.service, inst.endpoint, target.connectTimeoutMs, policy?.maxConnections);
      const r = httpRequest({ agent, method, path, headers });
      r.once('close', release);
      this.activeByInstance.set(inst.key, (this.activeByInstance.get(inst.key) ?? 0) + 1);
      r.once('close', () => this.activeByInstance.set(inst.key, (this.activeByInstance.get(inst.key) ?? 1) - 1));
      const timer = setTimeout(() => {
        r.destroy();
        reject(new ProxyAnswer(504, 'upstream request timeout'));
      }, timeoutMs);
      r.once('response', (up) => {
        // The deadline covers the whole exchange: a body that stalls past it is cut.
        up.once('end', () => clearTimeout(timer));
        up.once('close', () => clearTimeout(timer));
        resolve(up);
      });
      r.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      if (Buffer.isBuffer(body)) r.end(body);
      else body.pipe(r);
    });
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
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    for (const p of this.h2Sessions.values()) void p.then((s) => s.destroy(), () => undefined);
    this.h2Sessions.clear();
    await closeListener(server, this.open);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}
