// The discovery chain of one upstream, compiled from config entries as Consul does: service-router → service-splitter → service-resolver, down to (service, subset) targets.

import type { EntryLookup, EntrySource } from '../../model/config-entry.js';
import { parseGoDuration } from '../../lib/go-duration.js';
import { compileSubsetFilter, type SubsetFilter } from '../../model/subset-filter.js';
import { httpMatcher, type HttpMatchSpec, type RequestFacts } from '../../model/http-match.js';

export type { EntryLookup, EntrySource };

/** Where a request goes in the end: instances of `service` that pass `filter`. */
export interface Target {
  service: string;
  subset: string;
  filter: SubsetFilter;
  onlyPassing: boolean;
  connectTimeoutMs: number;
  lbPolicy: string;
  hashPolicies: { Field?: string; FieldValue?: string; SourceIP?: boolean; Terminal?: boolean }[];
  /** The resolver's Failover for this subset (or `*`): tried in order when the target has no healthy instance. */
  failover: Target[];
}

export type { RequestFacts };

export interface CompiledRoute {
  /** For metrics and logs: the route's position, or "default". */
  name: string;
  match(r: RequestFacts): boolean;
  targets: { weight: number; target: Target }[];
  timeoutMs: number;
  numRetries: number;
  retryOnConnectFailure: boolean;
  retryOn: Set<number>;
  prefixRewrite?: { from: string; to: string };
  /** nodemesh extension: delay or abort a share of requests. */
  fault?: { delayPercent: number; delayMs: number; abortPercent: number; abortStatus: number };
  /** nodemesh extension: send a copy of a share of requests to another service, answers dropped. */
  mirror?: { target: Target; percent: number };
}

/** nodemesh extension on the destination's resolver: what calls to it may use. */
export interface CallPolicy {
  maxConcurrentRequests: number;
  /** HTTP/1.1 connections per instance (0: the default, 512), and requests that may wait for one (0: no cap). */
  maxConnections: number;
  maxPendingRequests: number;
  rateLimit?: { perSecond: number; burst: number };
  outlier: { maxFailures: number; baseEjectionMs: number; disabled: boolean };
}

export function callPolicy(destination: string, get: EntryLookup): CallPolicy {
  const ext = (get('service-resolver', destination)?.Nodemesh as Rec | undefined) ?? {};
  const limits = (ext.Limits as Rec | undefined) ?? {};
  const rl = ext.RateLimit as Rec | undefined;
  const od = (ext.OutlierDetection as Rec | undefined) ?? {};
  return {
    maxConcurrentRequests: Number(limits.MaxConcurrentRequests ?? 0),
    maxConnections: Number(limits.MaxConnections ?? 0),
    maxPendingRequests: Number(limits.MaxPendingRequests ?? 0),
    rateLimit: rl ? { perSecond: Number(rl.RequestsPerSecond), burst: Math.max(1, Number(rl.Burst ?? Math.ceil(Number(rl.RequestsPerSecond)))) } : undefined,
    outlier: { maxFailures: Number(od.MaxFailures ?? 5) || 5, baseEjectionMs: ms(od.BaseEjectionTime, 30_000), disabled: od.Disabled === true },
  };
}

/** Envoy's and Consul's default per-request timeout. */
const DEFAULT_TIMEOUT_MS = 15_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

type Rec = Record<string, unknown>;
/** A duration from an entry; unset or not above zero means the default, as Consul treats "0s" (Envoy's 15 s route, 5 s connect timeout). */
const ms = (d: unknown, dflt: number) => {
  const v = typeof d === 'string' && d ? parseGoDuration(d) : 0;
  return v > 0 ? v : dflt;
};

function resolve(service: string, subset: string | undefined, get: EntryLookup, depth = 0, withFailover = true): Target {
  const r = get('service-resolver', service);
  const redirect = r?.Redirect as Rec | undefined;
  if (redirect?.Service && depth < 8) {
    // A redirect to another service asks for its ServiceSubset, or that service's own default: the subset asked of
    // the first service means nothing there (Consul's rewriteTarget).
    const next = String(redirect.Service);
    const sameService = next.toLowerCase() === service.toLowerCase();
    return resolve(next, (redirect.ServiceSubset as string | undefined) || (sameService ? subset : undefined), get, depth + 1, withFailover);
  }
  const name = subset || String(r?.DefaultSubset ?? '');
  const def = name ? (r?.Subsets as Record<string, Rec> | undefined)?.[name] : undefined;
  const lb = (r?.LoadBalancer as Rec | undefined) ?? {};
  const fo = (r?.Failover as Record<string, Rec> | undefined)?.[name || '*'] ?? (r?.Failover as Record<string, Rec> | undefined)?.['*'];
  // A failover target's own failover is not followed (one hop, as a datacenter list would be).
  const failover = withFailover && fo && (fo.Service || fo.ServiceSubset)
    ? [resolve(String(fo.Service || service), (fo.ServiceSubset as string | undefined) || undefined, get, depth + 1, false)]
    : [];
  return {
    failover,
    service, subset: name,
    filter: compileSubsetFilter(def?.Filter as string | undefined),
    onlyPassing: def?.OnlyPassing === true,
    connectTimeoutMs: ms(r?.ConnectTimeout, DEFAULT_CONNECT_TIMEOUT_MS),
    lbPolicy: String(lb.Policy ?? '') || 'round_robin',
    hashPolicies: (lb.HashPolicies as Target['hashPolicies'] | undefined) ?? [],
  };
}

function split(service: string, get: EntryLookup): { weight: number; target: Target }[] {
  const s = get('service-splitter', service);
  const splits = (s?.Splits as Rec[] | undefined) ?? [];
  if (!splits.length) return [{ weight: 100, target: resolve(service, undefined, get) }];
  return splits.filter((x) => Number(x.Weight ?? 0) > 0).map((x) => ({
    weight: Number(x.Weight),
    target: resolve(String(x.Service || service), x.ServiceSubset as string | undefined, get),
  }));
}

/** Compiles the chain for requests to `destination`: its router's routes in order, then the default route. */
export function compileChain(destination: string, get: EntryLookup): CompiledRoute[] {
  const routes: CompiledRoute[] = [];
  const router = get('service-router', destination);
  for (const [i, r] of ((router?.Routes as Rec[] | undefined) ?? []).entries()) {
    const d = (r.Destination as Rec | undefined) ?? {};
    const service = String(d.Service || destination);
    const http = ((r.Match as Rec | undefined)?.HTTP as Rec | undefined) ?? {};
    const from = String(http.PathExact || http.PathPrefix || '');
    const ext = (d.Nodemesh as Rec | undefined) ?? {};
    const fault = ext.Fault as Rec | undefined;
    const mirror = ext.Mirror as Rec | undefined;
    routes.push({
      name: `route-${i}`,
      match: httpMatcher((r.Match as Rec | undefined)?.HTTP as HttpMatchSpec | undefined),
      targets: d.ServiceSubset ? [{ weight: 100, target: resolve(service, String(d.ServiceSubset), get) }] : split(service, get),
      timeoutMs: ms(d.RequestTimeout, DEFAULT_TIMEOUT_MS),
      numRetries: Number(d.NumRetries ?? 0),
      retryOnConnectFailure: d.RetryOnConnectFailure === true,
      retryOn: new Set((d.RetryOnStatusCodes as number[] | undefined) ?? []),
      prefixRewrite: d.PrefixRewrite !== undefined && d.PrefixRewrite !== '' && from ? { from, to: String(d.PrefixRewrite) } : undefined,
      fault: fault ? { delayPercent: Number(fault.DelayPercent ?? 0), delayMs: ms(fault.Delay, 0), abortPercent: Number(fault.AbortPercent ?? 0), abortStatus: Number(fault.AbortStatus ?? 503) } : undefined,
      mirror: mirror?.Service ? { target: resolve(String(mirror.Service), undefined, get), percent: Number(mirror.Percent ?? 100) } : undefined,
    });
  }
  routes.push({
    name: 'default', match: () => true, targets: split(destination, get), timeoutMs: DEFAULT_TIMEOUT_MS,
    numRetries: 0, retryOnConnectFailure: false, retryOn: new Set(),
  });
  return routes;
}

/** Picks one target by weight (weights need not add up to 100 once zero-weight splits are dropped). */
export function pickTarget(targets: CompiledRoute['targets'], random = Math.random): Target | undefined {
  const total = targets.reduce((n, t) => n + t.weight, 0);
  let x = random() * total;
  for (const t of targets) {
    x -= t.weight;
    if (x < 0) return t.target;
  }
  return targets.at(-1)?.target;
}
