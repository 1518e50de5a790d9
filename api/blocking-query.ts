// Consul's blocking queries: ?index=&wait= parsing, the wait loop on catalog changes, and the index headers.

import type { ChangeFeed } from '../lib/change-feed.js';
import { NodemeshError } from '../lib/errors.js';
import { parseGoDuration } from '../lib/go-duration.js';
import { compileBexpr, type Bexpr } from '../model/bexpr.js';
import type { RequestContext } from './http-router.js';
import { sendJson } from './http-router.js';

export const DEFAULT_WAIT_MS = 5 * 60_000;
export const MAX_WAIT_MS = 10 * 60_000;

export interface QueryResult { index: number; body: unknown }

/** The request's ?filter (Consul's bexpr), compiled; undefined without one. A malformed filter is a 400. */
export function filterOf(query: URLSearchParams): Bexpr | undefined {
  const text = query.get('filter');
  return text ? compileBexpr(text) : undefined;
}

/** Consul applies a filter to each element of a list answer, or each value of a map answer (agent services, checks). */
export function applyFilter<T>(body: T, f: Bexpr | undefined): T {
  if (!f) return body;
  if (Array.isArray(body)) return body.filter((x) => f(x)) as T;
  if (body !== null && typeof body === 'object') return Object.fromEntries(Object.entries(body).filter(([, v]) => f(v))) as T;
  return body;
}

export function parseBlocking(query: URLSearchParams): { minIndex: number; waitMs: number } {
  const rawIndex = query.get('index');
  let minIndex = 0;
  if (rawIndex !== null && rawIndex !== '') {
    if (!/^\d+$/.test(rawIndex)) throw new NodemeshError('API_BAD_INDEX', 'Invalid index', 400);
    minIndex = Number(rawIndex);
  }
  const rawWait = query.get('wait');
  let waitMs = DEFAULT_WAIT_MS;
  if (rawWait !== null && rawWait !== '') {
    try {
      waitMs = parseGoDuration(rawWait);
    } catch {
      throw new NodemeshError('API_BAD_WAIT', 'Invalid wait time', 400);
    }
    // As Consul: zero or negative means the default, and the wait is capped.
    if (waitMs <= 0) waitMs = DEFAULT_WAIT_MS;
  }
  return { minIndex, waitMs: Math.min(waitMs, MAX_WAIT_MS) };
}

/**
 * Re-computes on every change of `feed` while `same(result)` holds, for at most the wait time plus up to 1/16 jitter
 * (or until the client goes away): the wait of every blocking query, whatever its index looks like.
 */
export async function waitWhile<T>(ctx: RequestContext, feed: ChangeFeed, waitMs: number, first: T, compute: () => T, same: (r: T) => boolean): Promise<T> {
  let result = first;
  const deadline = Date.now() + waitMs + Math.random() * (waitMs / 16);
  while (same(result) && Date.now() < deadline && !ctx.signal.aborted && !feed.isClosed) {
    await feed.wait(deadline - Date.now(), ctx.signal);
    result = compute();
  }
  return result;
}

/**
 * Answers `compute()` now, or — with ?index — as soon as its index passes the client's, or at the
 * wait time plus up to 1/16 jitter. The index sent is never 0.
 */
export async function answerBlocking(ctx: RequestContext, feed: ChangeFeed, compute: () => QueryResult, status = 200): Promise<void> {
  const filter = filterOf(ctx.query);
  const { minIndex, waitMs } = parseBlocking(ctx.query);
  let result = compute();
  if (minIndex > 0) result = await waitWhile(ctx, feed, waitMs, result, compute, (r) => r.index <= minIndex);
  if (ctx.res.destroyed) return;
  sendJson(ctx.res, status, applyFilter(result.body, filter), {
    'X-Consul-Index': String(Math.max(1, result.index)),
    'X-Consul-KnownLeader': 'true',
    'X-Consul-LastContact': '0',
    'X-Consul-Effective-Consistency': 'leader',
  });
}
