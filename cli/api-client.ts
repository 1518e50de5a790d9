// The CLI's HTTP client for the agent API: address and token from flags or env, errors as one clear line.

import { NodemeshError } from '../lib/errors.js';

export interface ClientOptions {
  httpAddr: string;
  token?: string;
  /** How long one call may take before the CLI gives up (default 10 s): an agent that accepts and never answers. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export function resolveAddr(raw: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new NodemeshError('CLI_BAD_ADDR', `invalid --http-addr ${JSON.stringify(raw)}: use host:port or http://host:port`, 2);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new NodemeshError('CLI_BAD_ADDR', `invalid --http-addr ${JSON.stringify(raw)}: scheme must be http or https`, 2);
  return url.origin;
}

export async function apiCall(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const { res, done } = await send(opts, method, path, body);
  try {
    const text = await res.text();
    if (!res.ok) throw apiError(opts, res, text);
    return text === '' ? undefined : JSON.parse(text);
  } catch (e) {
    throw timedOut(e, opts) ?? e;
  } finally {
    done();
  }
}

/**
 * A streamed answer (the monitor): the timeout covers only the wait for the agent's headers; the body then flows until
 * the agent ends it or `signal` fires.
 */
export async function apiStream(opts: ClientOptions, path: string, signal: AbortSignal): Promise<ReadableStream<Uint8Array>> {
  const { res, done } = await send(opts, 'GET', path, undefined, signal);
  done();
  if (!res.ok) throw apiError(opts, res, await res.text());
  return res.body ?? new ReadableStream();
}

/** The request, with a timer that aborts it after --timeout unless `done()` is called first. */
async function send(opts: ClientOptions, method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<{ res: Response; done(): void }> {
  const base = resolveAddr(opts.httpAddr);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const headers: Record<string, string> = {};
  if (opts.token) headers['X-Consul-Token'] = opts.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const timer = new AbortController();
  const t = setTimeout(() => timer.abort(Object.assign(new Error('timeout'), { name: 'TimeoutError' })), timeoutMs);
  const done = () => clearTimeout(t);
  try {
    const res = await fetch(`${base}${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: signal ? AbortSignal.any([timer.signal, signal]) : timer.signal,
    });
    return { res, done };
  } catch (e) {
    done();
    const late = timedOut(e, opts);
    if (late) throw late;
    const c = (e as { cause?: { code?: string; message?: string } }).cause;
    const cause = c?.code ?? c?.message ?? (e as Error).message;
    throw new NodemeshError('CLI_UNREACHABLE', `cannot reach the agent at ${base} (${cause}): is it running? start one with 'nodemesh agent --dev', or point --http-addr / NODEMESH_HTTP_ADDR at it`, 1);
  }
}

function timedOut(e: unknown, opts: ClientOptions): NodemeshError | undefined {
  if ((e as Error)?.name !== 'TimeoutError') return undefined;
  const base = resolveAddr(opts.httpAddr);
  return new NodemeshError('CLI_TIMEOUT', `the agent at ${base} did not answer within ${(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000} s: is it stuck or overloaded? (raise --timeout if it is just slow)`, 1);
}

function apiError(opts: ClientOptions, res: Response, text: string): NodemeshError {
  // The agent answers 403 alike for no token and a wrong one; the CLI knows which it sent.
  const hint = res.status !== 403 ? '' : opts.token
    ? ' (the token was rejected: check --token / NODEMESH_HTTP_TOKEN against the agent\'s acl_token, or operator_token for policy writes)'
    : ' (this needs a token: pass --token or set NODEMESH_HTTP_TOKEN)';
  return Object.assign(new NodemeshError('CLI_API_ERROR', `agent answered ${res.status}: ${text.trim() || res.statusText}${hint}`, 1), {
    /** The agent's own error code (X-Nodemesh-Error), when it sent one. */
    apiCode: res.headers.get('x-nodemesh-error') ?? undefined,
  });
}
