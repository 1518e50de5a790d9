// The discovery chain (dataplane/http/discovery-chain.ts): router → splitter → resolver compiled from real, validated config entries into routes and targets (subsets, redirects, failover, timeouts, retries), callPolicy and pickTarget.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callPolicy, compileChain, pickTarget, type CompiledRoute, type RequestFacts, type Target } from '../dataplane/http/discovery-chain.js';
import { decodeConfigEntry, type ConfigEntry, type Kind } from '../model/config-entry.js';
import type { ServiceRecord } from '../model/catalog-types.js';

/** Config entries as the API stores them: each decoded and validated by decodeConfigEntry first. */
class Entries {
  private readonly map = new Map<string, ConfigEntry>();
  private index = 0;
  readonly get = (kind: Kind, name: string): ConfigEntry | undefined => this.map.get(`${kind}/${name}`);

  put(...raws: Record<string, unknown>[]): this {
    for (const raw of raws) {
      const e = decodeConfigEntry(raw, this.get);
      this.index++;
      this.map.set(`${e.Kind}/${e.Name}`, { ...e, CreateIndex: this.index, ModifyIndex: this.index });
    }
    return this;
  }

  /** service-defaults with protocol http for each name (routers and splitters need it). */
  http(...names: string[]): this {
    return this.put(...names.map((Name) => ({ Kind: 'service-defaults', Name, Protocol: 'http' })));
  }
}

const none = () => undefined;

/** A request as the L7 listener describes it. */
function req(path: string, over: { method?: string; headers?: Record<string, string>; query?: string } = {}): RequestFacts {
  return { method: over.method ?? 'GET', path, query: new URLSearchParams(over.query ?? ''), headers: over.headers ?? {} };
}

/** The route a request takes: the first that matches (the default route matches everything). */
const routeFor = (routes: CompiledRoute[], r: RequestFacts) => routes.find((x) => x.match(r))!;

/** An instance for a subset filter to judge. */
function instance(meta: Record<string, string>, tags: string[] = [], nodeMeta: Record<string, string> = {}) {
  const service: ServiceRecord = {
    ID: 'api-1', Service: 'api', Tags: tags, Meta: meta, Port: 8080, Address: '127.0.0.1', Weights: { Passing: 1, Warning: 1 },
    EnableTagOverride: false, CreateIndex: 1, ModifyIndex: 1,
  };
  return { service, nodeMeta };
}

/** A target's identity and settings, without its compiled filter. */
function shape(t: Target): Record<string, unknown> {
  return {
    service: t.service, subset: t.subset, onlyPassing: t.onlyPassing, connectTimeoutMs: t.connectTimeoutMs, lbPolicy: t.lbPolicy,
    hashPolicies: t.hashPolicies, failover: t.failover.map((f) => `${f.service}/${f.subset}`),
  };
}
const where = (t: Target) => `${t.service}/${t.subset}`;
const targetsOf = (r: CompiledRoute) => r.targets.map((x) => `${x.weight}:${where(x.target)}`);

const V1_V2 = { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } };

// ---------------------------------------------------------------- no entries

test('with no config entries the chain is one default route to every instance of the destination', () => {
  const routes = compileChain('api', none);
  assert.equal(routes.length, 1);
  const [r] = routes;
  assert.equal(r.name, 'default');
  assert.equal(r.match(req('/anything', { method: 'DELETE' })), true);
  assert.equal(r.timeoutMs, 15_000, "Envoy's and Consul's default request timeout");
  assert.equal(r.numRetries, 0);
  assert.equal(r.retryOnConnectFailure, false);
  assert.equal(r.retryOn.size, 0);
  assert.equal(r.prefixRewrite, undefined);
  assert.equal(r.fault, undefined);
  assert.equal(r.mirror, undefined);
  assert.equal(r.targets.length, 1);
  assert.equal(r.targets[0].weight, 100);
  assert.deepEqual(shape(r.targets[0].target), {
    service: 'api', subset: '', onlyPassing: false, connectTimeoutMs: 5_000, lbPolicy: 'round_robin', hashPolicies: [], failover: [],
  });
  assert.equal(r.targets[0].target.filter(instance({ version: 'anything' })), true, 'no subset: every instance');
});

// ---------------------------------------------------------------- resolver

test('a resolver\'s DefaultSubset picks the subset, and its filter selects the instances', () => {
  const e = new Entries().put({ Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v1', Subsets: V1_V2 });
  const t = compileChain('api', e.get)[0].targets[0].target;
  assert.equal(where(t), 'api/v1');
  assert.equal(t.filter(instance({ version: 'v1' })), true);
  assert.equal(t.filter(instance({ version: 'v2' })), false);
  assert.equal(t.filter(instance({})), false);
});

test('a resolver without a DefaultSubset sends to every instance, subsets or not', () => {
  const e = new Entries().put({ Kind: 'service-resolver', Name: 'api', Subsets: V1_V2 });
  const t = compileChain('api', e.get)[0].targets[0].target;
  assert.equal(where(t), 'api/');
  assert.equal(t.filter(instance({ version: 'v2' })), true);
});

test('subset filters on tags and node meta, OnlyPassing, ConnectTimeout and the load balancer reach the target', () => {
  const e = new Entries().put({
    Kind: 'service-resolver', Name: 'api', DefaultSubset: 'eu-canary', ConnectTimeout: '1.5s',
    Subsets: { 'eu-canary': { Filter: 'canary in Service.Tags and Node.Meta.zone == eu', OnlyPassing: true } },
    LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x-user', Terminal: true }, { SourceIP: true }] },
  });
  const t = compileChain('api', e.get)[0].targets[0].target;
  assert.deepEqual(shape(t), {
    service: 'api', subset: 'eu-canary', onlyPassing: true, connectTimeoutMs: 1500, lbPolicy: 'ring_hash',
    hashPolicies: [{ Field: 'header', FieldValue: 'x-user', Terminal: true }, { SourceIP: true }], failover: [],
  });
  assert.equal(t.filter(instance({}, ['canary'], { zone: 'eu' })), true);
  assert.equal(t.filter(instance({}, ['canary'], { zone: 'us' })), false);
  assert.equal(t.filter(instance({}, ['stable'], { zone: 'eu' })), false);
});

test('a LoadBalancer without a Policy means round robin', () => {
  const e = new Entries().put({ Kind: 'service-resolver', Name: 'api', LoadBalancer: { LeastRequestConfig: { ChoiceCount: 2 } } });
  assert.equal(compileChain('api', e.get)[0].targets[0].target.lbPolicy, 'round_robin');
  const e2 = new Entries().put({ Kind: 'service-resolver', Name: 'api', LoadBalancer: { Policy: 'least_request' } });
  assert.equal(compileChain('api', e2.get)[0].targets[0].target.lbPolicy, 'least_request');
});

// ---------------------------------------------------------------- redirects

test('a resolver Redirect sends the chain to another service, with that service\'s own resolver settings', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'api', Redirect: { Service: 'api-v2' } },
    { Kind: 'service-resolver', Name: 'api-v2', ConnectTimeout: '250ms', DefaultSubset: 'stable', Subsets: { stable: { Filter: 'Service.Meta.track == stable' } } },
  );
  const t = compileChain('api', e.get)[0].targets[0].target;
  assert.equal(where(t), 'api-v2/stable');
  assert.equal(t.connectTimeoutMs, 250);
  assert.equal(t.filter(instance({ track: 'stable' })), true);
  assert.equal(t.filter(instance({ track: 'beta' })), false);
});

test('a Redirect with a ServiceSubset lands on that subset of the other service', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'api', Redirect: { Service: 'api-v2', ServiceSubset: 'v2' } },
    { Kind: 'service-resolver', Name: 'api-v2', DefaultSubset: 'v1', Subsets: V1_V2 },
  );
  assert.equal(where(compileChain('api', e.get)[0].targets[0].target), 'api-v2/v2');
});

test('redirects are followed through several resolvers', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'a', Redirect: { Service: 'b' } },
    { Kind: 'service-resolver', Name: 'b', Redirect: { Service: 'c' } },
    { Kind: 'service-resolver', Name: 'c', ConnectTimeout: '3s' },
  );
  const t = compileChain('a', e.get)[0].targets[0].target;
  assert.equal(t.service, 'c');
  assert.equal(t.connectTimeoutMs, 3000);
});

test('a redirect loop (each entry valid on its own) ends instead of recursing forever', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'a', Redirect: { Service: 'b' } },
    { Kind: 'service-resolver', Name: 'b', Redirect: { Service: 'a' } },
  );
  const routes = compileChain('a', e.get);
  assert.ok(['a', 'b'].includes(routes[0].targets[0].target.service));
  const self = new Entries().put({ Kind: 'service-resolver', Name: 'loop', Redirect: { Service: 'loop' } });
  assert.equal(compileChain('loop', self.get)[0].targets[0].target.service, 'loop');
});

test('a redirect to another service asks for its ServiceSubset or its own DefaultSubset, not the subset asked of the first (Consul\'s rewriteTarget)', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api', Redirect: { Service: 'api-v2' } },
    { Kind: 'service-resolver', Name: 'api-v2', DefaultSubset: 'v2', Subsets: V1_V2 },
    { Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathPrefix: '/old' } }, Destination: { ServiceSubset: 'v1' } }] },
  );
  // Consul: "Reset the chosen subset if we reference a service other than our own" → api-v2's DefaultSubset, v2.
  assert.equal(where(compileChain('api', e.get)[0].targets[0].target), 'api-v2/v2');
});

// ---------------------------------------------------------------- failover

test('Failover "*" adds another service as the target\'s failover, resolved with that service\'s resolver', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'api', Failover: { '*': { Service: 'api-backup' } } },
    { Kind: 'service-resolver', Name: 'api-backup', DefaultSubset: 'warm', Subsets: { warm: { Filter: 'Service.Meta.state == warm' } }, ConnectTimeout: '9s' },
  );
  const t = compileChain('api', e.get)[0].targets[0].target;
  assert.deepEqual(t.failover.map(where), ['api-backup/warm']);
  assert.equal(t.failover[0].connectTimeoutMs, 9000);
  assert.equal(t.failover[0].filter(instance({ state: 'warm' })), true);
  assert.equal(t.failover[0].filter(instance({ state: 'cold' })), false);
});

test('a subset\'s own Failover entry wins over "*", and ServiceSubset alone fails over within the service', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v1', Subsets: V1_V2, Failover: { v2: { ServiceSubset: 'v1' }, '*': { Service: 'api-dr' } } },
    { Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 50, ServiceSubset: 'v1' }, { Weight: 50, ServiceSubset: 'v2' }] },
  );
  const [v1, v2] = compileChain('api', e.get)[0].targets.map((x) => x.target);
  assert.equal(where(v1), 'api/v1');
  assert.deepEqual(v1.failover.map(where), ['api-dr/'], 'v1 has no entry of its own: "*"');
  assert.equal(where(v2), 'api/v2');
  assert.deepEqual(v2.failover.map(where), ['api/v1']);
  assert.equal(v2.failover[0].filter(instance({ version: 'v1' })), true);
});

test('failover is one hop: a failover target\'s own failover is not followed', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'api', Failover: { '*': { Service: 'b' } } },
    { Kind: 'service-resolver', Name: 'b', Failover: { '*': { Service: 'c' } } },
  );
  const t = compileChain('api', e.get)[0].targets[0].target;
  assert.deepEqual(t.failover.map(where), ['b/']);
  assert.deepEqual(t.failover[0].failover, []);
});

test('a failover target that redirects is followed to where it redirects', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'api', Failover: { '*': { Service: 'old-backup' } } },
    { Kind: 'service-resolver', Name: 'old-backup', Redirect: { Service: 'new-backup' } },
  );
  assert.deepEqual(compileChain('api', e.get)[0].targets[0].target.failover.map(where), ['new-backup/']);
});

test('a redirected service\'s failover comes from the resolver it was redirected to', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'api', Redirect: { Service: 'api-v2' } },
    { Kind: 'service-resolver', Name: 'api-v2', Failover: { '*': { Service: 'api-v2-dr' } } },
  );
  const t = compileChain('api', e.get)[0].targets[0].target;
  assert.equal(t.service, 'api-v2');
  assert.deepEqual(t.failover.map(where), ['api-v2-dr/']);
});

test('a Failover naming only other datacenters adds no failover target (one datacenter here)', () => {
  const e = new Entries().put({ Kind: 'service-resolver', Name: 'api', Failover: { '*': { Datacenters: ['dc2', 'dc3'] } } });
  assert.deepEqual(compileChain('api', e.get)[0].targets[0].target.failover, []);
});

// ---------------------------------------------------------------- splitter

test('a splitter divides the default route by weight, each split resolved to its subset', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v1', Subsets: V1_V2 },
    { Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 90, ServiceSubset: 'v1' }, { Weight: 10, ServiceSubset: 'v2' }] },
  );
  const [r] = compileChain('api', e.get);
  assert.deepEqual(targetsOf(r), ['90:api/v1', '10:api/v2']);
  assert.equal(r.targets[1].target.filter(instance({ version: 'v2' })), true);
});

test('a split to another service resolves that service; a split without subset takes the resolver\'s default', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v1', Subsets: V1_V2 },
    { Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 33.33 }, { Weight: 33.33, Service: 'api-next' }, { Weight: 33.34, ServiceSubset: 'v2' }] },
  );
  assert.deepEqual(targetsOf(compileChain('api', e.get)[0]), ['33.33:api/v1', '33.33:api-next/', '33.34:api/v2']);
});

test('zero-weight splits are dropped', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api', Subsets: V1_V2 },
    { Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 0, ServiceSubset: 'v1' }, { Weight: 100, ServiceSubset: 'v2' }] },
  );
  assert.deepEqual(targetsOf(compileChain('api', e.get)[0]), ['100:api/v2']);
});

test('MISSING (Consul differs): a split to a service that has its own splitter is not split again', { todo: 'discovery-chain split() resolves every split straight to a resolver; Consul follows a split to another service\'s splitter and flattens the weights (50 × 50/100 = 25)' }, () => {
  const e = new Entries().http('api', 'api-canary').put(
    { Kind: 'service-resolver', Name: 'api-canary', Subsets: { a: { Filter: 'Service.Meta.v == a' }, b: { Filter: 'Service.Meta.v == b' } } },
    { Kind: 'service-splitter', Name: 'api-canary', Splits: [{ Weight: 50, ServiceSubset: 'a' }, { Weight: 50, ServiceSubset: 'b' }] },
    { Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 50 }, { Weight: 50, Service: 'api-canary' }] },
  );
  assert.deepEqual(targetsOf(compileChain('api', e.get)[0]), ['50:api/', '25:api-canary/a', '25:api-canary/b']);
});

// ---------------------------------------------------------------- router

test('a router\'s routes come first, in order, named by position; the default route is last', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api', Subsets: V1_V2 },
    { Kind: 'service-router', Name: 'api', Routes: [
      { Match: { HTTP: { Header: [{ Name: 'x-canary', Exact: 'yes' }] } }, Destination: { ServiceSubset: 'v2' } },
      { Match: { HTTP: { PathPrefix: '/admin', Methods: ['POST'] } }, Destination: { Service: 'admin' } },
      { Match: { HTTP: { PathRegex: '/items/[0-9]+', QueryParam: [{ Name: 'debug', Present: true }] } }, Destination: { ServiceSubset: 'v1' } },
    ] },
  );
  const routes = compileChain('api', e.get);
  assert.deepEqual(routes.map((r) => r.name), ['route-0', 'route-1', 'route-2', 'default']);
  assert.equal(routeFor(routes, req('/', { headers: { 'x-canary': 'yes' } })).name, 'route-0');
  assert.equal(routeFor(routes, req('/admin/users', { method: 'POST', headers: { 'x-canary': 'yes' } })).name, 'route-0', 'the first match wins');
  assert.equal(routeFor(routes, req('/admin/users', { method: 'POST' })).name, 'route-1');
  assert.equal(routeFor(routes, req('/admin/users', { method: 'GET' })).name, 'default', 'every part of a match must hold');
  assert.equal(routeFor(routes, req('/items/42', { query: 'debug=1' })).name, 'route-2');
  assert.equal(routeFor(routes, req('/items/42x', { query: 'debug=1' })).name, 'default', 'PathRegex matches the whole path');
  assert.equal(routeFor(routes, req('/items/42')).name, 'default');
  assert.deepEqual(targetsOf(routes[0]), ['100:api/v2']);
  assert.deepEqual(targetsOf(routes[1]), ['100:admin/']);
  assert.deepEqual(targetsOf(routes[3]), ['100:api/']);
});

test('a route with a ServiceSubset goes straight to the resolver; one without goes through the splitter', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v1', Subsets: V1_V2 },
    { Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 80, ServiceSubset: 'v1' }, { Weight: 20, ServiceSubset: 'v2' }] },
    { Kind: 'service-router', Name: 'api', Routes: [
      { Match: { HTTP: { PathPrefix: '/pinned' } }, Destination: { ServiceSubset: 'v2' } },
      { Match: { HTTP: { PathPrefix: '/split' } }, Destination: { RequestTimeout: '1s' } },
      { Match: { HTTP: { PathPrefix: '/nodest' } } },
    ] },
  );
  const routes = compileChain('api', e.get);
  assert.deepEqual(targetsOf(routes[0]), ['100:api/v2']);
  assert.deepEqual(targetsOf(routes[1]), ['80:api/v1', '20:api/v2']);
  assert.deepEqual(targetsOf(routes[2]), ['80:api/v1', '20:api/v2'], 'a route without a Destination goes to the destination\'s splitter');
  assert.deepEqual(targetsOf(routes[3]), ['80:api/v1', '20:api/v2']);
});

test('a route to another service uses that service\'s splitter and resolver', () => {
  const e = new Entries().http('api', 'search').put(
    { Kind: 'service-resolver', Name: 'search', Subsets: { blue: { Filter: 'Service.Meta.c == blue' }, green: { Filter: 'Service.Meta.c == green' } } },
    { Kind: 'service-splitter', Name: 'search', Splits: [{ Weight: 75, ServiceSubset: 'blue' }, { Weight: 25, ServiceSubset: 'green' }] },
    { Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathPrefix: '/search' } }, Destination: { Service: 'search' } }] },
  );
  assert.deepEqual(targetsOf(compileChain('api', e.get)[0]), ['75:search/blue', '25:search/green']);
});

test('a route carries its timeout, retries and retryable status codes; the default route keeps the defaults', () => {
  const e = new Entries().http('api').put({ Kind: 'service-router', Name: 'api', Routes: [
    { Match: { HTTP: { PathPrefix: '/slow' } }, Destination: { RequestTimeout: '1m30s', NumRetries: 3, RetryOnConnectFailure: true, RetryOnStatusCodes: [503, 429] } },
    { Match: { HTTP: { PathPrefix: '/plain' } }, Destination: { Service: 'api' } },
  ] });
  const [slow, plain, dflt] = compileChain('api', e.get);
  assert.equal(slow.timeoutMs, 90_000);
  assert.equal(slow.numRetries, 3);
  assert.equal(slow.retryOnConnectFailure, true);
  assert.deepEqual([...slow.retryOn].sort(), [429, 503]);
  assert.equal(slow.retryOn.has(500), false);
  for (const r of [plain, dflt]) {
    assert.equal(r.timeoutMs, 15_000);
    assert.equal(r.numRetries, 0);
    assert.equal(r.retryOnConnectFailure, false);
    assert.equal(r.retryOn.size, 0);
  }
});

test('PrefixRewrite applies to the route\'s PathPrefix or PathExact; an empty PrefixRewrite is none', () => {
  const e = new Entries().http('api').put({ Kind: 'service-router', Name: 'api', Routes: [
    { Match: { HTTP: { PathPrefix: '/api/' } }, Destination: { PrefixRewrite: '/' } },
    { Match: { HTTP: { PathExact: '/health' } }, Destination: { PrefixRewrite: '/status' } },
    { Match: { HTTP: { PathPrefix: '/keep' } }, Destination: { PrefixRewrite: '' } },
  ] });
  const routes = compileChain('api', e.get);
  assert.deepEqual(routes[0].prefixRewrite, { from: '/api/', to: '/' });
  assert.deepEqual(routes[1].prefixRewrite, { from: '/health', to: '/status' });
  assert.equal(routes[2].prefixRewrite, undefined);
});

test('nodemesh extensions: a route\'s fault injection and mirror, with their defaults', () => {
  const e = new Entries().http('api').put(
    { Kind: 'service-resolver', Name: 'api-shadow', DefaultSubset: 'x', Subsets: { x: { Filter: 'Service.Meta.shadow == yes' } } },
    { Kind: 'service-router', Name: 'api', Routes: [
      { Match: { HTTP: { PathPrefix: '/chaos' } }, Destination: { Nodemesh: { Fault: { DelayPercent: 50, Delay: '300ms', AbortPercent: 20, AbortStatus: 502 } } } },
      { Match: { HTTP: { PathPrefix: '/abort' } }, Destination: { Nodemesh: { Fault: { AbortPercent: 5, AbortStatus: 503 } } } },
      { Match: { HTTP: { PathPrefix: '/' } }, Destination: { Nodemesh: { Mirror: { Service: 'api-shadow' } } } },
    ] },
  );
  const [chaos, abort, mirrored] = compileChain('api', e.get);
  assert.deepEqual(chaos.fault, { delayPercent: 50, delayMs: 300, abortPercent: 20, abortStatus: 502 });
  assert.deepEqual(abort.fault, { delayPercent: 0, delayMs: 0, abortPercent: 5, abortStatus: 503 });
  assert.equal(chaos.mirror, undefined);
  assert.equal(mirrored.fault, undefined);
  assert.equal(mirrored.mirror?.percent, 100, 'a mirror without Percent copies every request');
  assert.equal(where(mirrored.mirror!.target), 'api-shadow/x', 'the mirror is resolved with its own resolver');
});

test('the chain is read through the lookup only: entries for other services change nothing', () => {
  const e = new Entries().http('other').put(
    { Kind: 'service-resolver', Name: 'other', DefaultSubset: 'v1', Subsets: V1_V2 },
    { Kind: 'service-splitter', Name: 'other', Splits: [{ Weight: 100, ServiceSubset: 'v2' }] },
  );
  const [r] = compileChain('api', e.get);
  assert.deepEqual(targetsOf(r), ['100:api/']);
});

test('RequestTimeout "0s" means the 15 s default, as Consul sets a route timeout only above 0', () => {
  const e = new Entries().http('api').put({ Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathPrefix: '/' } }, Destination: { RequestTimeout: '0s' } }] });
  assert.equal(compileChain('api', e.get)[0].timeoutMs, 15_000);
});

test('ConnectTimeout "0s" means the 5 s default, as Consul uses it below 1', () => {
  const e = new Entries().put({ Kind: 'service-resolver', Name: 'api', ConnectTimeout: '0s' });
  assert.equal(compileChain('api', e.get)[0].targets[0].target.connectTimeoutMs, 5_000);
});

// ---------------------------------------------------------------- callPolicy

test('callPolicy without a resolver: no limits, no rate limit, outlier detection on (5 failures, 30 s)', () => {
  assert.deepEqual(callPolicy('api', none), {
    maxConcurrentRequests: 0, maxConnections: 0, maxPendingRequests: 0, rateLimit: undefined,
    outlier: { maxFailures: 5, baseEjectionMs: 30_000, disabled: false },
  });
  const plain = new Entries().put({ Kind: 'service-resolver', Name: 'api', ConnectTimeout: '1s' });
  assert.deepEqual(callPolicy('api', plain.get), callPolicy('api', none), 'a resolver without the extension is the same');
});

test('callPolicy reads the destination resolver\'s Nodemesh limits, rate limit and outlier detection', () => {
  const e = new Entries().put({ Kind: 'service-resolver', Name: 'api', Nodemesh: {
    Limits: { MaxConcurrentRequests: 64, MaxConnections: 32, MaxPendingRequests: 16 },
    RateLimit: { RequestsPerSecond: 100, Burst: 20 },
    OutlierDetection: { MaxFailures: 3, BaseEjectionTime: '10s', Disabled: true },
  } });
  assert.deepEqual(callPolicy('api', e.get), {
    maxConcurrentRequests: 64, maxConnections: 32, maxPendingRequests: 16, rateLimit: { perSecond: 100, burst: 20 },
    outlier: { maxFailures: 3, baseEjectionMs: 10_000, disabled: true },
  });
  assert.equal(callPolicy('other', e.get).rateLimit, undefined, 'only the named destination\'s resolver counts');
});

test('callPolicy: a rate limit without Burst bursts one second\'s worth, at least 1; MaxFailures 0 means the default 5', () => {
  const e = new Entries().put(
    { Kind: 'service-resolver', Name: 'a', Nodemesh: { RateLimit: { RequestsPerSecond: 7.5 } } },
    { Kind: 'service-resolver', Name: 'b', Nodemesh: { RateLimit: { RequestsPerSecond: 0.2 } } },
    { Kind: 'service-resolver', Name: 'c', Nodemesh: { OutlierDetection: { MaxFailures: 0 } } },
  );
  assert.deepEqual(callPolicy('a', e.get).rateLimit, { perSecond: 7.5, burst: 8 });
  assert.deepEqual(callPolicy('b', e.get).rateLimit, { perSecond: 0.2, burst: 1 });
  assert.equal(callPolicy('c', e.get).outlier.maxFailures, 5);
  assert.equal(callPolicy('c', e.get).outlier.baseEjectionMs, 30_000);
});

// ---------------------------------------------------------------- pickTarget

const T = (service: string): Target => compileChain(service, none)[0].targets[0].target;

test('pickTarget chooses by weight: the random draw falls in each target\'s share', () => {
  const [a, b] = [T('a'), T('b')];
  const targets = [{ weight: 90, target: a }, { weight: 10, target: b }];
  assert.equal(pickTarget(targets, () => 0), a);
  assert.equal(pickTarget(targets, () => 0.8999), a);
  assert.equal(pickTarget(targets, () => 0.9), b);
  assert.equal(pickTarget(targets, () => 0.99999), b);
});

test('pickTarget: weights need not add up to 100, and an even draw gives exact shares', () => {
  const [a, b, c] = [T('a'), T('b'), T('c')];
  const targets = [{ weight: 20, target: a }, { weight: 20, target: b }, { weight: 40, target: c }];
  const counts = new Map<Target, number>();
  const n = 1000;
  for (let i = 0; i < n; i++) {
    const t = pickTarget(targets, () => i / n)!;
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  assert.deepEqual([counts.get(a), counts.get(b), counts.get(c)], [250, 250, 500]);
});

test('pickTarget: no targets gives undefined; a draw of 1 (out of range) still gives the last target', () => {
  assert.equal(pickTarget([], () => 0.5), undefined);
  const [a, b] = [T('a'), T('b')];
  assert.equal(pickTarget([{ weight: 50, target: a }, { weight: 50, target: b }], () => 1), b);
  assert.equal(pickTarget([{ weight: 100, target: a }]), a, 'with Math.random by default');
});
