// The one L7 pipeline of an upstream listener, for HTTP/1.1 and HTTP/2 alike: route → admit → fault → mirror → pick → attempt (retry, failover, outlier detection) → respond.

import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import { normalizedUrl, type PathOptions } from '../../model/request-path.js';
import { hashKeyOf } from '../balance/request-hash.js';
import type { InstancePicker } from '../balance/instance-picker.js';
import type { Instance } from '../balance/service-instances.js';
import { HOP_BY_HOP } from '../pipe/byte-pipe.js';
import { stripXfcc } from '../http/client-cert-header.js';
import { pickTarget, type CallPolicy, type CompiledRoute, type Target } from '../http/discovery-chain.js';
import type { Exchange, OutgoingRequest, UpstreamAnswer } from '../http/l7-exchange.js';
import { ProxyAnswer } from '../http/proxy-answer.js';
import { RetryBudget } from '../http/retry-budget.js';
import { nextTraceparent } from '../http/trace-context.js';
import type { ProxyMetrics } from '../metrics/proxy-metrics.js';

/** Sends one attempt to an instance. */
export interface Transport {
  send(inst: Instance, target: Target, source: string, req: OutgoingRequest, timeoutMs: number, policy?: CallPolicy): Promise<UpstreamAnswer>;
  close(): void;
}

/** What the pipeline reads from its listener, per request. */
export interface PipelineContext {
  destination: string;
  routing(): { routes: CompiledRoute[]; policy: CallPolicy };
  pathOptions(): PathOptions;
  /** The local service a caller's address belongs to, or undefined. */
  sourceOf(address: string | undefined): string | undefined;
}

/** Request bodies up to this size are kept so the request can be retried or mirrored; larger ones stream and are not. */
const MAX_RETRY_BODY = 64 * 1024;
/** Instances tried after connect failures, per request. */
const MAX_CONNECT_ATTEMPTS = 3;
const MIRROR_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Picked { service?: string; subset?: string }

export class L7Pipeline {
  /** Requests in flight to the destination (circuit breaking), and the local rate limit's bucket. */
  private active = 0;
  private bucket = { tokens: 0, at: 0, perSecond: 0 };
  private readonly budget = new RetryBudget();

  constructor(
    private readonly ctx: PipelineContext,
    private readonly transport: Transport,
    private readonly picker: InstancePicker,
    private readonly log: Logger,
    private readonly metrics: ProxyMetrics,
    /** One JSON log line per request (access_log). */
    private readonly accessLog: boolean,
  ) {}

  /** Serves one request end to end; never throws (every failure is an answer to the caller). */
  async serve(ex: Exchange): Promise<void> {
    const started = process.hrtime.bigint();
    const destination = this.ctx.destination;
    const source = this.ctx.sourceOf(ex.remoteAddress);
    let routeName = 'none';
    /** The service and subset the last attempt went to. */
    const picked: Picked = {};
    const finish = (status: number) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.metrics.observeRequest({
        direction: 'outbound', source: source ?? 'unknown', destination, destinationService: picked.service, destinationSubset: picked.subset,
        route: routeName, method: ex.method, status, seconds,
      });
      if (this.accessLog) {
        this.log.info({
          access: true, source: source ?? 'unknown', destination, route: routeName, service: picked.service, subset: picked.subset,
          method: ex.method, path: ex.target, status, ms: Math.round(seconds * 1e5) / 100, traceparent: ex.headers.traceparent,
        }, 'request');
      }
    };
    if (!source) {
      this.metrics.denied.inc({ direction: 'outbound', source: 'unknown', destination, reason: 'attribution' });
      ex.answer(403, 'nodemesh: this address belongs to no service that declared the upstream', 'UPSTREAM_CALLER_UNKNOWN');
      return finish(403);
    }
    this.budget.deposit();
    try {
      const url = normalizedUrl(ex.target, this.ctx.pathOptions());
      if ('error' in url) throw new ProxyAnswer(400, `bad request: ${url.error}`, 'L7_BAD_REQUEST');
      const { routes, policy } = this.ctx.routing();
      const route = routes.find((r) => r.match({ method: ex.method, path: url.pathname, query: url.searchParams, headers: ex.headers }))!;
      routeName = route.name;
      if (!this.admit(policy)) throw new ProxyAnswer(429, 'local rate limit exceeded', 'RATE_LIMITED');
      if (policy.maxConcurrentRequests > 0 && this.active >= policy.maxConcurrentRequests) {
        this.metrics.denied.inc({ direction: 'outbound', source, destination, reason: 'overflow' });
        throw new ProxyAnswer(503, `upstream overflow: ${this.active} requests in flight (MaxConcurrentRequests ${policy.maxConcurrentRequests})`, 'UPSTREAM_OVERFLOW');
      }
      this.active++;
      try {
        const fault = route.fault;
        if (fault && Math.random() * 100 < fault.abortPercent) throw new ProxyAnswer(fault.abortStatus, 'fault filter abort', 'FAULT_ABORT');
        if (fault && fault.delayMs > 0 && Math.random() * 100 < fault.delayPercent) await sleep(fault.delayMs);
        finish(await this.forward(ex, route, source, url, policy, picked));
      } finally {
        this.active--;
      }
    } catch (e) {
      const a = e instanceof ProxyAnswer ? e : new ProxyAnswer(502, `upstream error: ${(e as Error).message}`, 'UPSTREAM_ERROR');
      ex.answer(a.status, a.message, a.code);
      finish(a.status);
    }
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

  /** Sends the request (with retries) and streams the answer back; resolves with the status the caller got. */
  private async forward(ex: Exchange, route: CompiledRoute, source: string, url: URL, policy: CallPolicy, picked: Picked): Promise<number> {
    const wantsCopy = route.numRetries > 0 || route.retryOnConnectFailure || route.mirror !== undefined;
    const body = ex.empty ? Buffer.alloc(0) : wantsCopy ? await ex.readBody(MAX_RETRY_BODY) : undefined;
    let path = url.pathname + url.search;
    if (route.prefixRewrite && url.pathname.startsWith(route.prefixRewrite.from)) {
      path = (route.prefixRewrite.to + url.pathname.slice(route.prefixRewrite.from.length)).replace(/^\/\//, '/') + url.search;
    }
    const headers: IncomingHttpHeaders = {};
    for (const [k, v] of Object.entries(ex.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    // Only the callee's agent says who called (from the verified peer): a caller's own X-Forwarded-Client-Cert goes no further.
    stripXfcc(headers);
    headers.traceparent = nextTraceparent(ex.headers.traceparent);
    if (route.mirror && body !== undefined && Math.random() * 100 < route.mirror.percent) this.mirror(route.mirror.target, source, { method: ex.method, path, headers, body });
    const deadline = Date.now() + route.timeoutMs;
    const tried = new Set<string>();
    let retriesLeft = route.numRetries;
    let connectTries = 0;
    const labels = { source, destination: this.ctx.destination, route: route.name };
    for (let attempt = 0; ; attempt++) {
      const wanted = pickTarget(route.targets);
      const hashKey = wanted && hashKeyOf(wanted, ex.headers, ex.remoteAddress, url);
      // A retry prefers an instance not tried yet, and takes a tried one when there is no other.
      const got = wanted && (this.picker.pickAny(wanted, tried, hashKey) ?? (attempt > 0 ? this.picker.pickAny(wanted, new Set(), hashKey) : undefined));
      if (!wanted || !got) throw new ProxyAnswer(503, `no healthy upstream for ${wanted ? `${wanted.service}${wanted.subset ? `/${wanted.subset}` : ''}` : this.ctx.destination}`, 'UPSTREAM_UNAVAILABLE');
      const { target, inst } = got;
      picked.service = target.service;
      picked.subset = target.subset ?? '';
      tried.add(inst.key);
      const left = deadline - Date.now();
      if (left <= 0) throw new ProxyAnswer(504, 'upstream request timeout', 'UPSTREAM_TIMEOUT');
      let up: UpstreamAnswer;
      try {
        up = await this.transport.send(inst, target, source, { method: ex.method, path, headers, body: body ?? ex.body() }, left, policy);
      } catch (e) {
        if (e instanceof ProxyAnswer) throw e;
        this.picker.outcome(target, inst, true, policy);
        // Nothing reached the instance (or it reset before answering): another instance may do, if the body can be sent again.
        if (body !== undefined && connectTries < MAX_CONNECT_ATTEMPTS - 1 && this.budgetAllows(labels)) {
          connectTries++;
          this.metrics.retries.inc({ ...labels, reason: 'connect' });
          continue;
        }
        throw new ProxyAnswer(503, `upstream connect error: ${(e as Error).message}`, 'UPSTREAM_CONNECT_FAILED');
      }
      this.picker.outcome(target, inst, up.effective >= 500, policy);
      if (route.retryOn.has(up.effective) && retriesLeft > 0 && body !== undefined && this.budgetAllows(labels)) {
        retriesLeft--;
        up.discard();
        this.metrics.retries.inc({ ...labels, reason: 'status' });
        await sleep(Math.min(25 * 2 ** attempt * (0.5 + Math.random()), Math.max(0, deadline - Date.now())));
        continue;
      }
      await ex.respond(up);
      return up.status;
    }
  }

  /** A copy of the request to the mirror's instance: fire and forget, its answer and errors dropped. */
  private mirror(target: Target, source: string, req: OutgoingRequest): void {
    const inst = this.picker.pick(target, new Set());
    if (!inst) return;
    const host = String(req.headers.host ?? target.service);
    this.transport.send(inst, target, source, { ...req, headers: { ...req.headers, host: `${host}-shadow` } }, MIRROR_TIMEOUT_MS)
      .then((up) => up.body.resume(), () => undefined);
  }

  /** Whether one more retry fits the budget; counts a refusal. */
  private budgetAllows(labels: { source: string; destination: string; route: string }): boolean {
    const ok = this.budget.withdraw();
    if (!ok) this.metrics.retries.inc({ ...labels, reason: 'budget' });
    return ok;
  }
}
