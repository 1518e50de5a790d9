// The inbound side: a service's public mTLS listener — verify the client, decide by intention, forward to the app, revoke live.

import { connect, type Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { RequestNormalization } from '../../model/config-entry.js';
import { joinSockets, type PipeEnd } from '../pipe/byte-pipe.js';
import { InboundL7, type Authorize, type RequestDecider } from './inbound-l7.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import { closeServer } from '../../lib/close-server.js';
import { isOwnTcpProbe } from '../../local/checks/check-probes.js';
import { xfccValue } from '../http/client-cert-header.js';
import { uriSans, type ServiceIdentity } from '../../identity/spiffe/spiffe-id.js';
import { IdentityRefusal, type BoundIdentity } from '../../identity/identity-binding.js';
import { SourceLimits } from './source-limits.js';
import { NO_CLIENT_CERT, type ServiceTls } from '../../identity/tls-identity.js';
import { TUNNEL_ALPN } from '../tunnel/tunnel-frames.js';
import { TunnelSession } from '../tunnel/tunnel-session.js';
import { listenServer } from '../../lib/listen-server.js';

export interface InboundTarget {
  /** The connect-proxy registration this listener serves. */
  proxyId: string;
  /** The destination service name (what intentions are written against). */
  service: string;
  appHost: string;
  appPort: number;
  /** The service's protocol by config entries: an http, http2 or grpc service can take L7 intentions, decided per request. */
  protocol: string;
  /** How requests are normalized before an L7 decision (the mesh entry); nodemesh's strict defaults without it. */
  normalization?: RequestNormalization;
}

export type { Authorize, RequestDecider };

interface OpenConn { client: PipeEnd; app: Socket; source: ServiceIdentity }

/**
 * ALPN: the tunnel for nodemesh peers; anything else a client offers (Consul's proxy offers h2) is
 * accepted as one plain mTLS connection, since a mismatch would otherwise fail the handshake.
 */
const ALPN = [TUNNEL_ALPN, 'h2', 'http/1.1'];

const APP_CONNECT_TIMEOUT_MS = 1000;
/** Protocols whose requests can be read and decided one by one. */
const L7_PROTOCOLS = new Set(['http', 'http2', 'grpc']);
const HANDSHAKE_TIMEOUT_MS = 5000;

/** What one public listener needs. */
export interface InboundListenerOptions {
  bind: string;
  port: number;
  target: InboundTarget;
  tls: ServiceTls;
  authorize: Authorize;
  log: Logger;
  metrics: ProxyMetrics;
  /** One HTTP request under an L7 intention; without it L7 intentions refuse the connection. */
  decideRequest?: RequestDecider;
  /** Shared by the agent's public listeners; a listener of its own when not given. */
  limits?: SourceLimits;
}

export class InboundListener {
  private server?: Server;
  private readonly open = new Set<OpenConn>();
  /** Every accepted TCP connection, handshaking or not, so close() can end them all. */
  private readonly raw = new Set<Socket>();
  private readonly tunnels = new Set<TunnelSession>();
  /** The verified identity each open tunnel's streams act as. */
  private readonly tunnelIds = new Map<TunnelSession, BoundIdentity>();
  /** remote address:port of connections that completed their handshake. */
  private readonly secured = new Set<string>();
  private draining = false;

  readonly bind: string;
  readonly port: number;
  private target: InboundTarget;
  private readonly tls: ServiceTls;
  private readonly authorize: Authorize;
  private readonly log: Logger;
  private readonly metrics: ProxyMetrics;
  private readonly decideRequest?: RequestDecider;
  private readonly limits: SourceLimits;

  constructor(o: InboundListenerOptions) {
    ({ bind: this.bind, port: this.port, target: this.target, tls: this.tls, authorize: this.authorize, log: this.log, metrics: this.metrics, decideRequest: this.decideRequest } = o);
    this.limits = o.limits ?? new SourceLimits();
  }
  private lastLimitLog = 0;
  /** Raw sockets refused over a per-source limit (their TLS wrapper then reports a hang-up). */
  private readonly refused = new WeakSet<Socket>();

  /** Connections under an L7 intention: parsed as HTTP here, each request decided on its own. */
  private l7?: InboundL7;

  get service(): string {
    return this.target.service;
  }

  async start(): Promise<void> {
    const server = createServer({ ...await this.tls.leafOptions(this.target.service), requestCert: true, rejectUnauthorized: true, allowHalfOpen: true, handshakeTimeout: HANDSHAKE_TIMEOUT_MS, ALPNProtocols: ALPN });
    server.on('connection', (sock: Socket) => {
      const source = sock.remoteAddress ?? '?';
      const verdict = this.limits.admit(source);
      if (verdict !== 'ok') {
        this.metrics.denied.inc({ direction: 'inbound', source: 'unknown', destination: this.target.service, reason: verdict });
        if (Date.now() - this.lastLimitLog > 10_000) {
          this.lastLimitLog = Date.now();
          this.log.warn({ destination: this.target.service, peer: source, limit: verdict }, 'inbound connection refused: over a per-source limit (logged at most every 10 s)');
        }
        this.refused.add(sock);
        sock.destroy();
        return;
      }
      this.raw.add(sock);
      const key = `${sock.remoteAddress}:${sock.remotePort}`;
      // With allowHalfOpen, a peer that connects and leaves without a handshake (a TCP health check)
      // would leave its socket open for good: whatever has not completed a handshake in time goes.
      const guard = setTimeout(() => { if (!this.secured.has(key)) sock.destroy(); }, HANDSHAKE_TIMEOUT_MS + 1000);
      guard.unref();
      sock.once('close', () => {
        clearTimeout(guard);
        this.raw.delete(sock);
        this.limits.closed(source, this.secured.delete(key));
      });
    });
    server.on('secureConnection', (s) => {
      this.secured.add(`${s.remoteAddress}:${s.remotePort}`);
      this.limits.secured(s.remoteAddress ?? '?');
      this.accept(s);
    });
    server.on('tlsClientError', (err, s) => {
      // A connection refused over a limit is counted under that limit, not again as a failed handshake.
      const raw = (s as TLSSocket & { _parent?: Socket })._parent;
      if (raw && this.refused.has(raw)) return;
      const destination = this.target.service;
      // A connection that left (or timed out) before sending a byte is a TCP check, not a failed handshake.
      if (raw && raw.bytesRead === 0) {
        this.metrics.probes.inc({ destination, source: isOwnTcpProbe(raw.remoteAddress, raw.remotePort) ? 'agent_check' : 'unknown' });
        return;
      }
      const noCert = (err as NodeJS.ErrnoException).code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE';
      this.metrics.denied.inc({ direction: 'inbound', source: 'unknown', destination, reason: noCert ? 'no_client_cert' : 'tls_handshake' });
      this.log.debug({ destination: this.target.service, peer: s.remoteAddress, err: err.message }, 'inbound TLS handshake refused');
    });
    await listenServer(server, this.port, this.bind);
    server.on('error', (e) => this.log.error({ err: e.message, port: this.port }, 'inbound listener error'));
    this.server = server;
    this.log.info({ service: this.target.service, listen: `${this.bind}:${this.port}`, app: `${this.target.appHost}:${this.target.appPort}` }, 'public listener open');
  }

  /**
   * New handshakes use the service's current leaf and trust bundle; open connections keep theirs.
   * Synchronous, so a rotation's new roots are in place before any leaf of the new root is used.
   */
  refreshTls(): void {
    const opts = this.tls.currentOptions(this.target.service);
    if (this.server && opts) this.server.setSecureContext(opts);
  }

  update(target: InboundTarget): void {
    this.target = target;
  }

  private accept(client: TLSSocket): void {
    const destination = this.target.service;
    const id = this.tls.clientIdentity(client);
    if (id instanceof IdentityRefusal) {
      // Counted as from 'unknown': the refused leaf's service name is no bounded label.
      this.tls.binding?.report({ direction: 'inbound', source: 'unknown', destination, peer: client.remoteAddress, refusal: id });
      client.destroy();
      return;
    }
    if (typeof id === 'string') {
      this.metrics.denied.inc({ direction: 'inbound', source: 'unknown', destination, reason: id === NO_CLIENT_CERT ? 'no_client_cert' : 'identity' });
      this.log.warn({ destination, peer: client.remoteAddress, reason: id }, 'inbound connection denied: bad client identity');
      client.destroy();
      return;
    }
    // Worked out once per TLS connection, and only if a request of it is read as HTTP.
    let header: string | undefined;
    const xfcc = () => (header ??= clientCertHeader(client, id));
    if (client.alpnProtocol !== TUNNEL_ALPN) return this.serve(client, id, client.remoteAddress, xfcc);
    // A tunnel: every stream is one connection from the same verified identity, decided on its own.
    const peer = client.remoteAddress;
    const notAfter = Date.parse(client.getPeerCertificate().valid_to);
    xfcc(); // read from the handshake now: the tunnel's streams come later
    const session = new TunnelSession(client, 'server', (stream) => {
      if (this.draining) {
        stream.destroy(new Error('draining'));
        return session.noteRefused();
      }
      if (!(Date.now() < notAfter)) {
        stream.destroy(new Error('client certificate expired'));
        return session.close(new Error('client certificate expired'));
      }
      // Per stream: the node that vouched for the identity may have stopped hosting it since the handshake.
      if (id.boundTo && !this.tls.binding?.holds(id.boundTo)) {
        this.tls.binding?.report({ direction: 'inbound', source: id.service, destination: this.target.service, peer, refusal: unboundText(id) });
        stream.destroy(new Error('identity unbound'));
        return session.close(new Error('identity unbound'));
      }
      this.serve(stream, id, peer, xfcc);
      if (stream.destroyed) session.noteRefused(); // denied by intention
    }, () => {
      this.tunnels.delete(session);
      this.tunnelIds.delete(session);
    });
    this.tunnels.add(session);
    this.tunnelIds.set(session, id);
  }

  /** Decides one connection (a socket, or a stream of a tunnel) and joins it to a new connection to the app. */
  private serve(client: PipeEnd, id: ServiceIdentity, peer: string | undefined, xfcc: () => string): void {
    const destination = this.target.service;
    const decision = this.authorize(id, destination);
    if (!decision.allowed) {
      this.metrics.denied.inc({ direction: 'inbound', source: id.service, destination, reason: decision.intention ? 'intention' : 'default_policy' });
      this.log.warn({
        source: id.service, destination, peer,
        intention: decision.intention ? { id: decision.intention.ID, precedence: decision.intention.Precedence, action: decision.intention.Action } : 'default policy',
      }, `inbound connection denied: ${decision.reason}`);
      client.destroy();
      return;
    }
    if (decision.l7) {
      if (!L7_PROTOCOLS.has(this.target.protocol) || !this.decideRequest) {
        this.metrics.denied.inc({ direction: 'inbound', source: id.service, destination, reason: 'intention' });
        this.log.warn({ source: id.service, destination, protocol: this.target.protocol, intention: decision.intention?.ID },
          `inbound connection denied: an L7 intention applies but ${destination} is not an HTTP service (set Protocol "http", "http2" or "grpc" in its service-defaults)`);
        client.destroy();
        return;
      }
      this.l7 ??= new InboundL7(() => this.target, this.authorize, this.decideRequest, this.log, this.metrics);
      return this.l7.serve(client, id, xfcc());
    }
    const labels = { direction: 'inbound' as const, source: id.service, destination };
    const app = connect({ host: this.target.appHost, port: this.target.appPort, allowHalfOpen: true, timeout: APP_CONNECT_TIMEOUT_MS });
    // Tracked from now, not from the app's connect: a deny that lands while the app is being dialled
    // must still find and close this connection.
    const conn: OpenConn = { client, app, source: id };
    this.open.add(conn);
    const onFail = (e: Error) => {
      this.log.warn({ ...labels, app: `${this.target.appHost}:${this.target.appPort}`, err: e.message }, 'inbound: cannot reach the local app');
      this.open.delete(conn);
      client.destroy();
      app.destroy();
    };
    app.once('timeout', () => onFail(new Error('connect timeout')));
    app.once('error', onFail);
    client.once('error', () => app.destroy());
    client.once('close', () => { if (app.connecting) onFail(new Error('client went away')); });
    app.once('connect', () => {
      app.setTimeout(0);
      app.off('error', onFail);
      if (client.destroyed || !this.open.has(conn)) {
        this.open.delete(conn);
        app.destroy();
        client.destroy();
        return;
      }
      const closed = this.metrics.connectionOpened(labels);
      joinSockets(client, app, ({ fromA, fromB }) => {
        this.open.delete(conn);
        closed(fromA, fromB);
      });
    });
  }

  /** Re-decides every open connection (intentions changed) and closes the ones now denied. */
  revalidate(): number {
    let closed = this.l7?.closeWhere((c) => !this.authorize(c.source, this.target.service).allowed) ?? 0;
    for (const c of [...this.open]) {
      const d = this.authorize(c.source, this.target.service);
      // A byte-path connection that now falls under an L7 intention must reconnect to be seen per request.
      if (d.allowed && !d.l7) continue;
      closed++;
      this.open.delete(c);
      this.metrics.denied.inc({ direction: 'inbound', source: c.source.service, destination: this.target.service, reason: 'revoked' });
      this.log.warn({
        source: c.source.service, destination: this.target.service,
        intention: d.intention ? { id: d.intention.ID, precedence: d.intention.Precedence, action: d.intention.Action } : 'default policy',
      }, `open connection revoked: ${d.reason}`);
      c.client.destroy();
      c.app.destroy();
    }
    return closed;
  }

  /**
   * Closes open connections, L7 connections and tunnels whose identity was accepted on the strength of a node's
   * intermediate for a service that node no longer hosts (its grace ran out): like a deny.
   */
  revokeUnbound(): number {
    const binding = this.tls.binding;
    if (!binding) return 0;
    const lapsed = (id: BoundIdentity) => id.boundTo !== undefined && !binding.holds(id.boundTo);
    const revoke = (id: BoundIdentity) => binding.report({ direction: 'inbound', source: id.service, destination: this.target.service, refusal: unboundText(id), revoked: true });
    let closed = 0;
    for (const c of [...this.open]) {
      if (!lapsed(c.source)) continue;
      closed++;
      this.open.delete(c);
      revoke(c.source);
      c.client.destroy();
      c.app.destroy();
    }
    closed += this.l7?.closeWhere((c) => lapsed(c.source) && (revoke(c.source), true)) ?? 0;
    for (const [session, id] of [...this.tunnelIds]) {
      if (!lapsed(id)) continue;
      this.tunnelIds.delete(session);
      session.close(new Error('identity unbound'));
    }
    return closed;
  }

  get openConnections(): number {
    return this.open.size;
  }

  /** Connections still open (handshaking or carrying traffic; a tunnel counts its streams), for a drain. */
  get busy(): number {
    let n = this.raw.size - this.tunnels.size;
    for (const t of this.tunnels) n += t.streamCount;
    return n;
  }

  /** Stops taking new connections and new tunnel streams; open ones carry on (a drain). */
  stopAccepting(): void {
    this.draining = true;
    this.server?.close();
    // Open tunnels hear GOAWAY: their clients open new streams elsewhere; idle ones simply close.
    for (const t of this.tunnels) {
      if (t.streamCount === 0) t.close();
      else t.goAway();
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.open) {
      c.client.destroy();
      c.app.destroy();
    }
    this.open.clear();
    this.l7?.close();
    for (const sock of this.raw) sock.destroy();
    this.raw.clear();
    if (server) await closeServer(server);
  }
}

/** The verified peer in Envoy's XFCC format, By this listener's own leaf (the certificate this handshake presented). */
function clientCertHeader(client: TLSSocket, id: ServiceIdentity): string {
  const own = uriSans((client.getCertificate() as { subjectaltname?: string } | null)?.subjectaltname)[0] ?? '';
  return xfccValue(own, client.getPeerCertificate().raw, id.uri);
}

/** Why a bound identity lapsed, for the revocation log line. */
const unboundText = (id: BoundIdentity) => `IDENTITY_UNBOUND: the catalog no longer lists ${id.service} on node ${id.boundTo?.node} (grace over)`;
