// The inbound L7 path: connections under an L7 intention read as HTTP/1.1 or HTTP/2; each request normalized, decided by the intention's permissions and forwarded re-framed to the app.

import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect as h2connect, constants as h2, createServer as createH2Server, type ClientHttp2Session, type Http2Server, type Http2Session, type OutgoingHttpHeaders as H2Headers, type ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import type { ErrorCode } from '../../lib/error-codes.js';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Decision } from '../../policy/decision.js';
import type { RequestFacts } from '../../model/http-match.js';
import type { Intention } from '../../model/intention.js';
import { applyUnderscoreAction, headerFieldError, normalizeRequestTarget, targetOf } from '../../model/request-path.js';
import type { RequestNormalization } from '../../model/config-entry.js';
import { HTTP_AS_GRPC, stripPseudo } from '../http/h2-streams.js';
import { HOP_BY_HOP, type PipeEnd } from '../pipe/byte-pipe.js';
import { stripXfcc, XFCC } from '../http/client-cert-header.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';
import type { ServiceIdentity } from '../../identity/spiffe/spiffe-id.js';

/** What the L7 path needs of the listener's target (the app, its protocol, the mesh's request normalization). */
export interface L7Target {
  service: string;
  appHost: string;
  appPort: number;
  protocol: string;
  normalization?: RequestNormalization;
}

export type Authorize = (source: ServiceIdentity, destination: string) => Decision;
/** `error`: the intention could not be evaluated (the request is denied, and this is reported). */
export type RequestDecider = (intention: Intention, request: RequestFacts) => { allowed: boolean; reason: string; error?: string };

/** The verified peer a connection (HTTP/1.1) or session (HTTP/2) acts as, and its X-Forwarded-Client-Cert value. */
interface Peer { id: ServiceIdentity; xfcc: string }
const PEER = Symbol('nodemesh.peer');

/** An L7 connection, for revocation. */
export interface L7Conn { client: PipeEnd; source: ServiceIdentity }

/** HTTP/2's connection preface: a connection that opens with it is read as HTTP/2 (prior knowledge), any other as HTTP/1.1. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** Headers HTTP/2 forbids are HTTP/1.1's hop-by-hop ones (RFC 9113 §8.2.2); `te: trailers`, the one exception, is set apart. */
const H2_FORBIDDEN = HOP_BY_HOP;

/** A request's verdict: forward it (the normalized target, headers as they will be decided and sent) or answer it. */
type Verdict = { forward: { path: string; query: string } } | { status: number; message: string; code: ErrorCode };

export class InboundL7 {
  readonly conns = new Set<L7Conn>();
  private h1?: HttpServer;
  private h2?: Http2Server;
  private appAgent?: HttpAgent;
  private appSession?: ClientHttp2Session;
  /** The peer of the connection being handed to the HTTP/2 server (its 'session' event fires synchronously). */
  private handing?: Peer;
  private readonly sessionPeers = new WeakMap<Http2Session, Peer>();

  constructor(
    private readonly target: () => L7Target,
    private readonly authorize: Authorize,
    private readonly decideRequest: RequestDecider,
    private readonly log: Logger,
    private readonly metrics: ProxyMetrics,
  ) {}

  /**
   * Takes a connection whose source has an L7 intention. A TLS connection is HTTP/2 when it negotiated `h2`; a tunnel
   * stream (no ALPN of its own) is read as HTTP/2 when it opens with the preface. Either way every request is decided.
   */
  serve(client: PipeEnd, id: ServiceIdentity, xfcc: string): void {
    const conn = { client, source: id };
    this.conns.add(conn);
    client.once('close', () => this.conns.delete(conn));
    this.metrics.opened.inc({ direction: 'inbound', source: id.service, destination: this.target().service });
    const peer: Peer = { id, xfcc };
    const alpn = (client as Partial<TLSSocket>).alpnProtocol;
    if (alpn !== undefined) return alpn === 'h2' ? this.serveH2(client, peer) : this.serveH1(client, peer);
    sniffPreface(client, (isH2) => (isH2 ? this.serveH2(client, peer) : this.serveH1(client, peer)));
  }

  private serveH1(client: PipeEnd, peer: Peer): void {
    (client as unknown as Record<symbol, Peer>)[PEER] = peer;
    this.h1 ??= createHttpServer({ keepAlive: true }, (req, res) => this.guard(res, () => this.h1Request(req, res), (req.socket as unknown as Record<symbol, Peer | undefined>)[PEER], req.method));
    this.h1.emit('connection', client);
    client.resume();
  }

  private serveH2(client: PipeEnd, peer: Peer): void {
    if (!this.h2) {
      this.h2 = createH2Server();
      this.h2.on('session', (s) => {
        if (this.handing) this.sessionPeers.set(s, this.handing);
        s.on('error', () => undefined);
      });
      this.h2.on('stream', (stream, headers) => {
        const p = this.sessionPeers.get(stream.session!);
        stream.on('error', () => undefined);
        if (!p) return void stream.close(h2.NGHTTP2_REFUSED_STREAM);
        this.guard(stream, () => this.h2Request(stream, headers, p), p, String(headers[':method']));
      });
    }
    this.handing = peer;
    try {
      this.h2.emit('connection', client);
    } finally {
      this.handing = undefined;
    }
    client.resume();
  }

  /** Nothing a request (or the intention deciding it) holds may throw out of the HTTP server: that would stop the agent. */
  private guard(res: ServerResponse | ServerHttp2Stream, run: () => void, peer: Peer | undefined, method: string | undefined): void {
    // The callee's side of the request metrics: what the caller got, however the request ended.
    const started = process.hrtime.bigint();
    const destination = this.target().service;
    res.once('close', () => this.metrics.observeRequest({
      direction: 'inbound', source: peer?.id.service ?? 'unknown', destination, destinationService: destination, route: 'inbound',
      method: method ?? 'GET', status: sentStatus(res), seconds: Number(process.hrtime.bigint() - started) / 1e9,
    }));
    try {
      run();
    } catch (e) {
      const destination = this.target().service;
      this.metrics.denied.inc({ direction: 'inbound', source: peer?.id.service ?? 'unknown', destination, reason: 'l7_error' });
      this.log.error({ code: 'L7_REQUEST_FAILED', source: peer?.id.service, destination, method, err: e instanceof Error ? e.message : String(e) },
        'inbound request failed while it was decided or forwarded: denied');
      if ('respond' in res) {
        if (!res.headersSent && !res.destroyed) res.respond({ ':status': 403, 'x-nodemesh-error': 'L7_DENIED' }, { endStream: true });
        else res.close(h2.NGHTTP2_INTERNAL_ERROR);
      } else if (!res.headersSent) res.writeHead(403, { 'content-type': 'text/plain', 'x-nodemesh-error': 'L7_DENIED' }).end('RBAC: access denied\n');
      else res.destroy();
    }
  }

  /**
   * One view of a request for the decision and for the app: normalized target, underscore headers dealt with (they
   * are removed from `headers` when the mesh says DROP_HEADER), then the intention decided again (it may have changed
   * since the connection opened) and its permissions matched.
   */
  private verdict(peer: Peer, method: string, rawTarget: string, headers: IncomingHttpHeaders): Verdict {
    const destination = this.target().service;
    const norm = this.target().normalization;
    const target = normalizeRequestTarget(rawTarget, norm?.path);
    const fieldError = headerFieldError(headers);
    const underscore = applyUnderscoreAction(headers, norm?.underscores);
    if ('error' in target || fieldError || underscore) {
      const why = 'error' in target ? target.error : fieldError ?? `header names with '_' are refused (${JSON.stringify(underscore)}): applications may read them as '-'`;
      this.log.debug({ source: peer.id.service, destination, method, err: why }, 'inbound request refused: 400');
      return { status: 400, message: `bad request: ${why}`, code: 'L7_BAD_REQUEST' };
    }
    const facts: RequestFacts = { method, path: target.path, query: new URLSearchParams(target.query), headers };
    const d = this.authorize(peer.id, destination);
    const v = !d.allowed ? { allowed: false, reason: d.reason } : d.l7 && d.intention ? this.decideRequest(d.intention, facts) : { allowed: true, reason: d.reason };
    if ('error' in v && v.error) {
      // An intention this agent cannot evaluate: denied, counted apart and logged as an error (it needs fixing).
      this.metrics.denied.inc({ direction: 'inbound', source: peer.id.service, destination, reason: 'l7_error' });
      this.log.error({ code: 'L7_INTENTION_UNEVALUABLE', source: peer.id.service, destination, method, path: facts.path, intention: d.intention?.ID, err: v.error },
        `inbound request denied: ${v.reason}`);
      return { status: 403, message: 'RBAC: access denied', code: 'L7_DENIED' };
    }
    if (!v.allowed) {
      this.metrics.denied.inc({ direction: 'inbound', source: peer.id.service, destination, reason: 'l7_permission' });
      this.log.warn({ source: peer.id.service, destination, method, path: facts.path, intention: d.intention?.ID }, `inbound request denied: ${v.reason}`);
      return { status: 403, message: 'RBAC: access denied', code: 'L7_DENIED' };
    }
    return { forward: target };
  }

  private h1Request(req: IncomingMessage, res: ServerResponse): void {
    const peer = (req.socket as unknown as Record<symbol, Peer>)[PEER];
    const v = this.verdict(peer, req.method ?? 'GET', req.url ?? '/', req.headers);
    if ('status' in v) {
      res.writeHead(v.status, { 'content-type': 'text/plain', 'x-nodemesh-error': v.code, ...(v.status === 400 ? { connection: 'close' } : {}) }).end(`${v.message}\n`);
      return;
    }
    const headers = appHeaders(req.headers, peer);
    // Re-framed, never raw: a chunked body goes on chunked (Node encodes it), a sized one keeps its checked length;
    // without either a request has no body. (Node's parser refuses CL with TE, duplicate lengths, obs-fold, bare CR/LF.)
    if (req.headers['transfer-encoding'] !== undefined) {
      delete headers['content-length'];
      headers['transfer-encoding'] = 'chunked';
    }
    this.toH1App(req.method ?? 'GET', targetOf(v.forward), headers, req, (status, out, body) => {
      res.writeHead(status, out);
      body.pipe(res);
    }, (e) => {
      this.appUnreachable(peer, e);
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain', 'x-nodemesh-error': 'APP_UNREACHABLE' }).end('local app unreachable\n');
      else res.destroy();
    });
  }

  private h2Request(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: Peer): void {
    const method = String(headers[':method'] ?? '');
    const grpcCall = String(headers['content-type'] ?? '').startsWith('application/grpc');
    const answer = (status: number, message: string, code: ErrorCode) => {
      if (stream.destroyed || stream.headersSent) return;
      // A gRPC client reads errors from grpc-status: a trailers-only answer, as a gRPC server (and Envoy's RBAC) gives.
      if (grpcCall) stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(HTTP_AS_GRPC[status] ?? 2), 'grpc-message': encodeURIComponent(message), 'x-nodemesh-error': code }, { endStream: true });
      else {
        stream.respond({ ':status': status, 'content-type': 'text/plain', 'x-nodemesh-error': code });
        stream.end(`${message}\n`);
      }
    };
    if (method === 'CONNECT' || headers[':path'] === undefined) return answer(400, 'bad request: CONNECT is not served on an L7 listener', 'L7_BAD_REQUEST');
    const plain: IncomingHttpHeaders = {};
    for (const [k, val] of Object.entries(headers)) if (!k.startsWith(':')) plain[k] = val;
    if (headers[':authority'] !== undefined) plain.host = String(headers[':authority']);
    const v = this.verdict(peer, method, String(headers[':path']), plain);
    if ('status' in v) return answer(v.status, v.message, v.code);
    const path = targetOf(v.forward);
    const onError = (e: Error) => {
      this.appUnreachable(peer, e);
      if (!stream.headersSent) answer(502, 'local app unreachable', 'APP_UNREACHABLE');
      else stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    };
    if (this.target().protocol === 'http') {
      // HTTP/2 to an HTTP/1.1 app: the body is re-framed by what HTTP/2 verified — its content-length (nghttp2 holds the
      // DATA frames to it) or chunked; never unframed bytes the app could read as a second request.
      const out = appHeaders(plain, peer);
      delete out['transfer-encoding'];
      if (stream.endAfterHeaders) {
        if (out['content-length'] !== undefined && out['content-length'] !== '0') return answer(400, 'bad request: content-length without a body', 'L7_BAD_REQUEST');
      } else if (out['content-length'] === undefined) out['transfer-encoding'] = 'chunked';
      this.toH1App(method, path, out, stream, (status, resHeaders, body) => {
        const h: H2Headers = { ':status': status };
        for (const [k, val] of Object.entries(resHeaders)) if (!H2_FORBIDDEN.has(k)) h[k] = val;
        stream.respond(h);
        body.pipe(stream);
      }, onError);
      return;
    }
    this.toH2App(stream, plain, method, path, peer, onError);
  }

  /** One request to an HTTP/1.1 app on a kept-alive connection; the response head goes to `onHead`, its body to pipe. */
  private toH1App(method: string, path: string, headers: OutgoingHttpHeaders, body: Readable, onHead: (status: number, headers: OutgoingHttpHeaders, body: IncomingMessage) => void, onError: (e: Error) => void): void {
    const t = this.target();
    this.appAgent ??= new HttpAgent({ keepAlive: true, maxSockets: 256 });
    const up = httpRequest({ host: t.appHost, port: t.appPort, method, path, headers, agent: this.appAgent }, (r) => {
      const out: OutgoingHttpHeaders = {};
      for (const [k, val] of Object.entries(r.headers)) if (!HOP_BY_HOP.has(k) && val !== undefined) out[k] = val;
      onHead(r.statusCode ?? 502, out, r);
    });
    up.on('error', onError);
    // A caller that goes away mid-body (or a stream HTTP/2 reset for breaking its framing) takes the app request
    // with it: the app must not wait for the rest of a body that will never come.
    body.once('close', () => { if (!body.readableEnded) up.destroy(); });
    body.pipe(up);
  }

  /** One stream to an HTTP/2 (h2c) app on a shared session, trailers carried (gRPC's status lives there). */
  private toH2App(stream: ServerHttp2Stream, plain: IncomingHttpHeaders, method: string, path: string, peer: Peer, onError: (e: Error) => void): void {
    const t = this.target();
    if (!this.appSession || this.appSession.closed || this.appSession.destroyed) {
      const s = h2connect(`http://${t.appHost}:${t.appPort}`);
      s.on('error', () => undefined);
      s.once('close', () => { if (this.appSession === s) this.appSession = undefined; });
      this.appSession = s;
    }
    const out: H2Headers = {};
    for (const [k, val] of Object.entries(appHeaders(plain, peer))) if (!H2_FORBIDDEN.has(k) && k !== 'host' && val !== undefined) out[k] = val;
    if (plain.te === 'trailers') out.te = 'trailers'; // gRPC's: the one te value HTTP/2 carries
    out[':method'] = method;
    out[':path'] = path;
    out[':scheme'] = 'http';
    out[':authority'] = plain.host ?? t.service;
    const up = this.appSession.request(out, { endStream: stream.endAfterHeaders });
    let trailers: IncomingHttpHeaders | undefined;
    up.on('trailers', (tr) => { trailers = tr; });
    up.on('error', (e) => onError(e));
    stream.once('close', () => { if (!up.closed) up.close(h2.NGHTTP2_CANCEL); });
    up.once('close', () => { if (!stream.closed && !stream.headersSent) onError(new Error(`app stream closed (code ${up.rstCode ?? 0})`)); });
    if (!stream.endAfterHeaders) stream.pipe(up);
    up.once('response', (h) => {
      const resp: H2Headers = {};
      for (const [k, val] of Object.entries(h)) if (!H2_FORBIDDEN.has(k) && val !== undefined) resp[k] = val;
      if (stream.destroyed) return void up.close(h2.NGHTTP2_CANCEL);
      if (up.endAfterHeaders) return void stream.respond(resp, { endStream: true });
      stream.respond(resp, { waitForTrailers: true });
      // No trailers came: an empty trailing HEADERS frame ends the stream cleanly (close() would reset it).
      stream.once('wantTrailers', () => stream.sendTrailers(trailers ? stripPseudo(trailers) : {}));
      up.pipe(stream);
    });
  }

  private appUnreachable(peer: Peer, e: Error): void {
    const t = this.target();
    this.log.warn({ source: peer.id.service, destination: t.service, app: `${t.appHost}:${t.appPort}`, err: e.message }, 'inbound: cannot reach the local app');
  }

  /** Closes the L7 connections `drop` picks; returns how many. */
  closeWhere(drop: (c: L7Conn) => boolean): number {
    let closed = 0;
    for (const c of [...this.conns]) {
      if (!drop(c)) continue;
      closed++;
      this.conns.delete(c);
      c.client.destroy();
    }
    return closed;
  }

  close(): void {
    this.closeWhere(() => true);
    this.appAgent?.destroy();
    this.appSession?.destroy();
  }
}

/** Headers for the app: hop-by-hop ones dropped, and the caller's identity only as the verified peer says it. */
function appHeaders(headers: IncomingHttpHeaders, peer: Peer): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
  stripXfcc(out);
  out[XFCC] = peer.xfcc;
  return out;
}

/** Reads a stream's first bytes until they match HTTP/2's preface or cannot; puts them back and reports which. */
function sniffPreface(client: PipeEnd, done: (isH2: boolean) => void): void {
  let got = Buffer.alloc(0);
  const finish = (isH2: boolean) => {
    client.off('data', onData);
    client.off('end', onEnd);
    client.pause();
    if (got.length) client.unshift(got);
    done(isH2);
  };
  const onData = (c: Buffer) => {
    got = Buffer.concat([got, c]);
    const n = Math.min(got.length, H2_PREFACE.length);
    const prefix = got.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (!prefix || got.length >= H2_PREFACE.length) finish(prefix);
  };
  const onEnd = () => finish(false);
  client.on('data', onData);
  client.once('end', onEnd);
}

/** The status a response carried; 499 (nginx's "client closed request") when the caller left before any was sent. */
function sentStatus(res: ServerResponse | ServerHttp2Stream): number {
  if ('respond' in res) return Number(res.sentHeaders?.[':status'] ?? 499) || 499;
  return res.headersSent ? res.statusCode : 499;
}
