// Calls to a Consul agent's HTTP API through the `consul` client: reads with blocking-query indexes, writes, and cancellation on stop.

import { EventEmitter } from 'node:events';
import Consul from 'consul';
import { NodemeshError } from '../../lib/errors.js';

export interface ConsulReply<T> { body: T; index: number; status: number; headers: Record<string, string | string[] | undefined> }

export interface ConsulHttpOptions {
  /** http://host:port (CONSUL_HTTP_ADDR's form; a bare host:port is taken as http). */
  address: string;
  token?: string;
}

/** The request shape papi (the `consul` client's transport) takes, and what its middleware sees. */
interface PapiRequest { err?: Error & { statusCode?: number; response?: { body?: unknown } }; res: { statusCode: number; body: unknown; headers: Record<string, string | string[] | undefined> } }
type Middleware = (request: PapiRequest, next: (stop: boolean, err?: Error, value?: unknown) => void) => void;
type PapiCall = (opts: Record<string, unknown>, ...mw: Middleware[]) => Promise<unknown>;

/** Whole response, status and headers included (the client's own helpers keep only the body). */
const whole: Middleware = (request, next) => {
  if (request.err) return next(false, request.err);
  next(false, undefined, { body: request.res.body, status: request.res.statusCode, headers: request.res.headers });
};

export function parseConsulAddress(address: string): URL {
  let url: URL;
  try {
    url = new URL(/^[a-z]+:\/\//i.test(address) ? address : `http://${address}`);
  } catch {
    throw new NodemeshError('CONFIG_INVALID', `consul address ${JSON.stringify(address)} is not a URL; give it as http://127.0.0.1:8500`, 2);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new NodemeshError('CONFIG_INVALID', `consul address ${address}: scheme must be http or https`, 2);
  }
  return url;
}

export class ConsulHttp {
  private readonly client: InstanceType<typeof Consul>;
  private readonly inflight = new Set<EventEmitter>();
  private closed = false;
  readonly url: URL;

  constructor(private readonly opts: ConsulHttpOptions) {
    this.url = parseConsulAddress(opts.address);
    this.client = new Consul({
      host: this.url.hostname, port: Number(this.url.port || (this.url.protocol === 'https:' ? 443 : 80)),
      secure: this.url.protocol === 'https:',
    });
  }

  get address(): string {
    return this.url.origin;
  }

  /**
   * A read. With `index` it is a blocking query: it returns when the data moves past `index` or after `wait`.
   * Rejects with CONSUL_UNREACHABLE (no answer) or CONSUL_ERROR (Consul's status and message).
   */
  get<T>(path: string, query: Record<string, string> = {}, block?: { index: number; waitSeconds: number }, signal?: AbortSignal): Promise<ConsulReply<T>> {
    const q = { ...query };
    if (block && block.index > 0) {
      q.index = String(block.index);
      q.wait = `${block.waitSeconds}s`;
    }
    // Consul adds up to wait/16 of jitter; the timeout leaves room for it.
    const timeout = block ? (block.waitSeconds * 1.1 + 10) * 1000 : 10_000;
    return this.call('GET', path, q, undefined, timeout, this.opts.token, signal);
  }

  put<T = unknown>(path: string, body?: unknown, query: Record<string, string> = {}): Promise<ConsulReply<T>> {
    return this.call('PUT', path, query, body, 10_000);
  }

  post<T = unknown>(path: string, body?: unknown, query: Record<string, string> = {}): Promise<ConsulReply<T>> {
    return this.call('POST', path, query, body, 10_000);
  }

  delete<T = unknown>(path: string, query: Record<string, string> = {}): Promise<ConsulReply<T>> {
    return this.call('DELETE', path, query, undefined, 10_000);
  }

  private async call<T>(method: string, path: string, query: Record<string, string>, body: unknown, timeout: number, token = this.opts.token, signal?: AbortSignal): Promise<ConsulReply<T>> {
    if (this.closed || signal?.aborted) throw new NodemeshError('CONSUL_UNREACHABLE', 'consul client closed', 503);
    const ctx = new EventEmitter();
    this.inflight.add(ctx);
    const cancel = () => ctx.emit('cancel');
    signal?.addEventListener('abort', cancel, { once: true });
    const fn = { GET: '_get', PUT: '_put', POST: '_post', DELETE: '_delete' }[method];
    if (!fn) throw new NodemeshError('API_BAD_METHOD', `method ${method} not allowed`, 405);
    const req: Record<string, unknown> = {
      name: `nodemesh.${method.toLowerCase()}`, path, query, ctx, timeout,
      headers: token ? { 'x-consul-token': token } : {},
      ...(body === undefined ? {} : { body, type: 'json' }),
    };
    try {
      const r = await ((this.client as unknown as Record<string, PapiCall>)[fn]).call(this.client, req, whole) as { body: T; status: number; headers: Record<string, string> };
      const index = Number(r.headers['x-consul-index'] ?? 0);
      return { body: r.body, status: r.status, headers: r.headers, index: Number.isFinite(index) ? index : 0 };
    } catch (e) {
      const err = e as PapiRequest['err'] & { message: string };
      const res = (err as unknown as { response?: { statusCode?: number; body?: unknown } }).response;
      if (res?.statusCode) {
        const text = typeof res.body === 'string' ? res.body : Buffer.isBuffer(res.body) ? res.body.toString('utf8') : JSON.stringify(res.body);
        throw new NodemeshError('CONSUL_ERROR', `consul ${method} ${path}: ${res.statusCode} ${text.trim()}`, res.statusCode >= 500 ? 502 : res.statusCode);
      }
      throw new NodemeshError('CONSUL_UNREACHABLE', `consul at ${this.address} unreachable (${method} ${path}): ${err.message.replace(/^consul: /, '')}`, 503);
    } finally {
      this.inflight.delete(ctx);
      signal?.removeEventListener('abort', cancel);
    }
  }

  /** Cancels every request in flight (blocking queries included) and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const ctx of this.inflight) ctx.emit('cancel');
    this.inflight.clear();
    this.client.destroy();
  }
}
