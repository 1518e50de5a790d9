// Requests to instances over HTTP/2: a few sessions per (caller, service, instance), each on its own tunnel stream; trailers carried, a deadline per exchange.

import { connect as h2connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders as H2Headers } from 'node:http2';
import type { InstancePicker } from '../balance/instance-picker.js';
import type { Instance } from '../balance/service-instances.js';
import type { Target } from '../http/discovery-chain.js';
import { GRPC_AS_HTTP } from '../http/h2-streams.js';
import type { OutgoingRequest, UpstreamAnswer } from '../http/l7-exchange.js';
import { ProxyAnswer } from '../http/proxy-answer.js';
import type { Endpoint, TunnelPool } from '../tunnel/tunnel-pool.js';
import type { Transport } from './l7-pipeline.js';

/** HTTP/2 sessions kept per instance and caller (one alone would cap at the peer's stream limit and one stream's window). */
const SESSIONS_PER_INSTANCE = 4;

export class H2Transport implements Transport {
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private turn = 0;

  constructor(private readonly tunnels: TunnelPool, private readonly picker: InstancePicker) {}

  private sessionFor(source: string, service: string, ep: Endpoint, connectTimeoutMs: number): Promise<ClientHttp2Session> {
    const k = `${source}\0${service}\0${ep.host}:${ep.port}\0${this.turn++ % SESSIONS_PER_INSTANCE}`;
    let p = this.sessions.get(k);
    if (!p) {
      p = this.tunnels.open(ep, source, service, connectTimeoutMs).then((stream) => {
        const session = h2connect(`http://${service}`, { createConnection: () => stream });
        const forget = () => { if (this.sessions.get(k) === p) this.sessions.delete(k); };
        session.once('close', forget);
        session.once('error', forget);
        session.once('goaway', forget);
        return session;
      });
      p.catch(() => { if (this.sessions.get(k) === p) this.sessions.delete(k); });
      this.sessions.set(k, p);
    }
    return p;
  }

  async send(inst: Instance, target: Target, source: string, req: OutgoingRequest, timeoutMs: number): Promise<UpstreamAnswer> {
    const session = await this.sessionFor(source, target.service, inst.endpoint, target.connectTimeoutMs);
    const out: H2Headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (k !== 'host' && v !== undefined) out[k] = v;
    out[':method'] = req.method;
    out[':path'] = req.path;
    out[':authority'] = req.headers.host ?? target.service;
    const empty = Buffer.isBuffer(req.body) && req.body.length === 0;
    const up = session.request(out, { endStream: empty });
    const done = this.picker.started(inst);
    up.once('close', done);
    let trailers: IncomingHttpHeaders | undefined;
    up.on('trailers', (t) => { trailers = t; });
    if (!empty) {
      if (Buffer.isBuffer(req.body)) up.end(req.body);
      else req.body.pipe(up);
    }
    return new Promise((resolve, reject) => {
      // The deadline covers the whole exchange: before the answer it is a 504; after, the stream is cut.
      const timer = setTimeout(() => {
        up.close(h2.NGHTTP2_CANCEL);
        reject(new ProxyAnswer(504, 'upstream request timeout', 'UPSTREAM_TIMEOUT'));
      }, timeoutMs);
      timer.unref();
      up.once('close', () => {
        clearTimeout(timer);
        reject(new Error(`stream closed (code ${up.rstCode ?? 0})`));
      });
      up.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      up.once('response', (h) => {
        const status = Number(h[':status'] ?? 502);
        // A gRPC error arrives as trailers-only (grpc-status in the headers, HTTP 200): it stands for the HTTP code retries name.
        const grpcStatus = Number(h['grpc-status'] ?? Number.NaN);
        const headers: IncomingHttpHeaders = {};
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) headers[k] = v as string | string[];
        up.on('error', () => undefined);
        resolve({
          status, effective: GRPC_AS_HTTP[grpcStatus] ?? status, headers, body: up,
          endAfterHeaders: up.endAfterHeaders || !Number.isNaN(grpcStatus),
          trailers: () => trailers,
          discard: () => up.close(h2.NGHTTP2_CANCEL),
        });
      });
    });
  }

  close(): void {
    for (const p of this.sessions.values()) void p.then((s) => s.destroy(), () => undefined);
    this.sessions.clear();
  }
}
