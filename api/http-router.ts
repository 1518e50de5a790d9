// The HTTP API's request plumbing: routing, body limits, write authorization, error mapping and metrics.

import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sameSecret } from '../lib/same-secret.js';
import type { Logger } from 'pino';
import { NodemeshError, isNodemeshError, type ErrorCode } from '../lib/errors.js';

export const MAX_BODY_BYTES = 1 << 20;

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Aborts when the client goes away or the agent shuts down. */
  signal: AbortSignal;
  body(): Promise<string>;
  /** The body as it came, bytes (a pass-through's, where values may be binary). */
  bytes(): Promise<Buffer>;
}

export type Handler = (ctx: RequestContext) => Promise<void> | void;

interface Route { method: string; pattern: RegExp; keys: string[]; name: string; handler: Handler; write: boolean; authorize?: WriteAuthorizer }

/** A route's own rule for its writes (pool-wide policy needs the operator token, not the node's): given the request's token. */
export type WriteAuthorizer = (token: string | undefined) => boolean;

export interface RouterOptions {
  aclToken: string | undefined;
  /** Reads need the token too (`acl_default_policy: "deny"`), except the probes' paths. */
  readsNeedToken?: boolean;
  /** Host names a browser may use for the agent besides IP addresses and localhost (the node's name). */
  browserHosts?: string[];
  log: Logger;
  observe(route: string, method: string, code: number, seconds: number): void;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The header every error answer of the API (4xx, 5xx) carries its code in, so scripts and the CLI need not match message text. */
export const ERROR_HEADER = 'X-Nodemesh-Error';

/** The header naming `code`, for an error answer sent some other way (JSON). */
export const errorHeader = (code: ErrorCode): Record<string, string> => ({ [ERROR_HEADER]: code });

/** The API's own error answer: text, with its registered code in X-Nodemesh-Error. */
export function sendError(res: ServerResponse, status: number, code: ErrorCode, text: string, headers: Record<string, string> = {}): void {
  sendText(res, status, text, { ...headers, ...errorHeader(code) });
}

/** The request's ACL token, from Consul's three places. */
export function requestToken(req: IncomingMessage, query: URLSearchParams): string | undefined {
  const h = req.headers['x-consul-token'];
  if (typeof h === 'string' && h !== '') return h;
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '');
  return query.get('token') ?? undefined;
}

/** Compares digests, so neither the content nor the length of the token leaks through timing. */

/** Whether the request carries the agent's token (always true when none is configured). */
export function tokenAllows(req: IncomingMessage, query: URLSearchParams, aclToken: string | undefined): boolean {
  if (aclToken === undefined) return true;
  const token = requestToken(req, query);
  return token !== undefined && sameSecret(token, aclToken);
}

/** Reads that stay open whatever acl_default_policy says: what probes and Consul clients discovering the agent use, and the UI's own files (they hold no data). */
const OPEN_READS = ['/v1/agent/ready', '/v1/status/', '/ui/'];

/**
 * A browser's request for a Host name that is no IP address, not localhost and not one the agent knows as its own: a
 * DNS-rebinding page (evil.example resolved to 127.0.0.1) would otherwise be same-origin with the agent. Requests
 * from outside a browser (no Sec-Fetch-* or Origin header: the CLI, curl, Consul's clients) are not concerned.
 */
export function foreignBrowserHost(req: IncomingMessage, known: readonly string[]): string | undefined {
  const fromBrowser = req.headers['sec-fetch-site'] !== undefined || req.headers['sec-fetch-mode'] !== undefined || req.headers.origin !== undefined;
  if (!fromBrowser) return undefined;
  const raw = req.headers.host ?? '';
  let host: string;
  try {
    host = new URL(`http://${raw}`).hostname.toLowerCase();
  } catch {
    return raw;
  }
  const bare = host.replace(/^\[|\]$/g, '');
  if (isIP(bare) || host === 'localhost' || host.endsWith('.localhost') || known.some((k) => k.toLowerCase() === host)) return undefined;
  return raw;
}

/**
 * A browser sends Origin (and Sec-Fetch-Site) with a cross-site write: another site's page must not drive this agent
 * (in loopback dev mode a write needs no token, so a form or a no-cors fetch elsewhere could). The CLI, curl and
 * Consul's clients send neither; the UI's own requests are same-origin.
 */
export function crossSiteWrite(req: IncomingMessage): string | undefined {
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return `Sec-Fetch-Site: ${site}`;
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return `Origin: ${origin}`;
  }
  return host === req.headers.host ? undefined : `Origin: ${origin}`;
}

export class Router {
  private readonly routes: Route[] = [];
  /** Path prefixes handled whole by one handler before any route (the Consul backend's pass-through). */
  private readonly mounts: { prefixes: string[]; name: string; handler: Handler }[] = [];
  /** One controller per request in flight, aborted when its client goes or the agent stops. */
  private readonly inflight = new Set<AbortController>();
  private closing = false;

  constructor(private readonly opts: RouterOptions) {}

  /** Registers a route; `:name` segments become params. PUT/POST/DELETE routes are writes and need the token. */
  on(method: string, path: string, handler: Handler, opts: { authorize?: WriteAuthorizer } = {}): this {
    const keys: string[] = [];
    const pattern = new RegExp(`^${path.replace(/\/:(\w+)(\*)?/g, (_, k: string, star?: string) => {
      keys.push(k);
      return star ? '/(.*)' : '/([^/]*)';
    })}$`);
    this.routes.push({ method, pattern, keys, name: path, handler, write: method !== 'GET' && method !== 'HEAD', authorize: opts.authorize });
    return this;
  }

  /** Sends every request under these prefixes (any method) to `handler`; writes still need the token. */
  mount(name: string, prefixes: string[], handler: Handler): this {
    this.mounts.push({ prefixes, name, handler });
    return this;
  }

  /** Releases every blocking query at shutdown. */
  abortAll(): void {
    this.closing = true;
    for (const c of this.inflight) c.abort();
  }

  readonly handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = process.hrtime.bigint();
    let routeName = 'unmatched';
    const method = req.method ?? 'GET';
    const controller = new AbortController();
    if (this.closing) controller.abort();
    this.inflight.add(controller);
    res.on('close', () => {
      controller.abort();
      this.inflight.delete(controller);
    });
    const signal = controller.signal;
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.opts.observe(routeName, method, res.statusCode, seconds);
    });
    try {
      let url: URL;
      let path: string;
      try {
        url = new URL(req.url ?? '/', 'http://agent');
        path = decodeURIComponent(url.pathname);
      } catch {
        throw new NodemeshError('API_BAD_PATH', `invalid request URL ${JSON.stringify(req.url)}`, 400);
      }
      const rebound = foreignBrowserHost(req, this.opts.browserHosts ?? []);
      if (rebound !== undefined) return sendError(res, 403, 'CSRF_REFUSED', `a browser asked for the agent under the name ${JSON.stringify(rebound)}, which is not its own (DNS rebinding?): open the UI at its IP address or localhost`);
      if (method !== 'GET' && method !== 'HEAD') {
        const foreign = crossSiteWrite(req);
        if (foreign) return sendError(res, 403, 'CSRF_REFUSED', `a write from another site's page is refused (${foreign}): use the agent's UI, the CLI or an API client`);
      }
      if ((method === 'GET' || method === 'HEAD') && this.opts.readsNeedToken && !OPEN_READS.some((p) => path === p || path.startsWith(p))
        && !tokenAllows(req, url.searchParams, this.opts.aclToken)) {
        return sendError(res, 403, 'ACL_TOKEN_DENIED', 'Permission denied: reads need the agent\'s ACL token here (acl_default_policy "deny"; X-Consul-Token header, ?token= or Authorization: Bearer)');
      }
      const mount = this.mounts.find((m) => m.prefixes.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`)));
      if (mount) {
        routeName = mount.name;
        if (method !== 'GET' && method !== 'HEAD' && !tokenAllows(req, url.searchParams, this.opts.aclToken)) {
          return sendError(res, 403, 'ACL_TOKEN_DENIED', 'Permission denied: this write needs the agent\'s ACL token (X-Consul-Token header, ?token= or Authorization: Bearer)');
        }
        return await mount.handler({ req, res, params: { path }, query: url.searchParams, signal, ...bodyOf(req) });
      }
      let matches = this.routes.map((r) => ({ r, m: r.pattern.exec(path) })).filter((x) => x.m);
      if (matches.length === 0) return sendError(res, 404, 'API_NOT_FOUND', '404 page not found\n');
      // A literal path (/v1/agent/service/register) beats a pattern that also matches it (/v1/agent/service/:id).
      const literal = matches.filter((x) => x.r.keys.length === 0);
      if (literal.length > 0) matches = literal;
      const hit = matches.find((x) => x.r.method === method) ?? (method === 'HEAD' ? matches.find((x) => x.r.method === 'GET') : undefined);
      if (!hit) {
        routeName = matches[0].r.name;
        return sendError(res, 405, 'API_BAD_METHOD', `method ${method} not allowed`, { Allow: [...new Set(matches.map((x) => x.r.method))].join(', ') });
      }
      routeName = hit.r.name;
      if (hit.r.write && hit.r.authorize) {
        if (!hit.r.authorize(requestToken(req, url.searchParams))) {
          return sendError(res, 403, 'POLICY_TOKEN_DENIED', 'Permission denied: a write of pool-wide policy (intentions, config entries) needs the operator token (X-Consul-Token header, ?token= or Authorization: Bearer)');
        }
      } else if (hit.r.write && !tokenAllows(req, url.searchParams, this.opts.aclToken)) {
        return sendError(res, 403, 'ACL_TOKEN_DENIED', 'Permission denied: this write needs the agent\'s ACL token (X-Consul-Token header, ?token= or Authorization: Bearer)');
      }
      const params: Record<string, string> = {};
      hit.r.keys.forEach((k, i) => { params[k] = hit.m![i + 1]; });
      await hit.r.handler({ req, res, params, query: url.searchParams, signal, ...bodyOf(req) });
    } catch (e) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // The stable code rides along in a header, so scripts and the CLI need not match message text.
      if (isNodemeshError(e)) {
        // A status below 400 is a process exit code (a start-up error): over HTTP it is an internal failure.
        const status = e.status >= 400 && e.status <= 599 ? e.status : 500;
        if (status >= 500) this.opts.log.warn({ code: e.code, route: routeName }, e.message);
        return sendError(res, status, e.code, e.message);
      }
      this.opts.log.error({ err: (e as Error).stack, route: routeName }, 'API handler failed');
      sendError(res, 500, 'INTERNAL', `internal error: ${(e as Error).message}`);
    }
  };
}

/** The request body's bytes, within MAX_BODY_BYTES (413 beyond). */
function readBytes(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) {
    req.resume();
    return Promise.reject(new NodemeshError('API_BODY_TOO_LARGE', `Request body too large: ${declared} bytes, the limit is ${MAX_BODY_BYTES}`, 413));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        failed = true;
        reject(new NodemeshError('API_BODY_TOO_LARGE', `Request body too large: over ${MAX_BODY_BYTES} bytes`, 413));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => { if (!failed) resolve(Buffer.concat(chunks)); });
    req.on('error', (e) => { if (!failed) { failed = true; reject(e); } });
  });
}

/** A request's body, read once on first use: as bytes, or as UTF-8 text. */
function bodyOf(req: IncomingMessage): Pick<RequestContext, 'body' | 'bytes'> {
  let bytes: Promise<Buffer> | undefined;
  let text: Promise<string> | undefined;
  const raw = () => (bytes ??= readBytes(req));
  return { bytes: raw, body: () => (text ??= readBody(raw())) };
}

/** The request body as UTF-8 text (400 when it is not). */
async function readBody(bytes: Promise<Buffer>): Promise<string> {
  const buf = await bytes;
  const text = buf.toString('utf8');
  if (Buffer.byteLength(text) !== buf.length || text.includes('\uFFFD') && !buf.includes(Buffer.from('\uFFFD'))) {
    throw new NodemeshError('API_BODY_ENCODING', 'Request decode failed: body is not valid UTF-8', 400);
  }
  return text;
}
