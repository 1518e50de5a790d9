// Config entries (Consul's /v1/config): write, read, list, delete, check-and-set, blocking reads, validation of bad
// entries, replication between two agents by gossip, and the `nodemesh config` CLI. Agents on 127.0.72.1 and .2.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigEntryStore } from '../policy/config-entry-store.js';
import { poolCa, put, runCli, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { waitFor } from './helpers/wait-for.js';

let a: TestAgent;
let b: TestAgent;

before(async () => {
  b = await startTestAgent({ node: 'cfg-b', bind: '127.0.72.2', ...await poolCa() });
  a = await startTestAgent({ node: 'cfg-a', bind: '127.0.72.1', join: [`127.0.72.2:${b.gossip.port}`], ...await poolCa() });
});
after(async () => {
  await a?.stop();
  await b?.stop();
});

const write = (agent: TestAgent, entry: unknown, query = '') => agent.api(`/v1/config${query}`, put(entry));
const read = async (agent: TestAgent, path: string) => {
  const r = await agent.api(path);
  return { status: r.status, index: Number(r.headers.get('x-consul-index')), body: r.status === 200 ? await r.json() : await r.text() };
};

test('write, read, list and delete service-defaults, a resolver, a splitter and a router, with Consul\'s shapes', async () => {
  assert.equal(await (await write(a, { Kind: 'service-defaults', Name: 'web', Protocol: 'http' })).json(), true);
  assert.equal((await write(a, {
    Kind: 'service-resolver', Name: 'web', DefaultSubset: 'v1', ConnectTimeout: '3s',
    Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } },
    LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x-user' }] },
  })).status, 200);
  assert.equal((await write(a, { Kind: 'service-splitter', Name: 'web', Splits: [{ Weight: 90, ServiceSubset: 'v1' }, { Weight: 10, ServiceSubset: 'v2' }] })).status, 200);
  assert.equal((await write(a, {
    kind: 'service-router', name: 'web', routes: [{
      Match: { HTTP: { PathPrefix: '/admin', Header: [{ Name: 'x-canary', Exact: 'yes' }], Methods: ['GET', 'POST'] } },
      Destination: { ServiceSubset: 'v2', PrefixRewrite: '/', RequestTimeout: '2s', NumRetries: 3, RetryOnConnectFailure: true, RetryOnStatusCodes: [503] },
    }],
  })).status, 200, 'snake/lower-case keys are accepted as Consul accepts them');

  const one = await read(a, '/v1/config/service-router/web');
  assert.equal(one.status, 200);
  const router = one.body as { Kind: string; Name: string; Routes: { Destination: { NumRetries: number } }[]; CreateIndex: number; ModifyIndex: number };
  assert.equal(router.Kind, 'service-router');
  assert.equal(router.Routes[0].Destination.NumRetries, 3);
  assert.ok(router.ModifyIndex > 0 && router.CreateIndex === router.ModifyIndex);
  const list = await read(a, '/v1/config/service-defaults');
  assert.deepEqual((list.body as { Name: string }[]).map((e) => e.Name), ['web']);
  assert.ok(list.index >= router.ModifyIndex);

  const missing = await read(a, '/v1/config/service-router/nope');
  assert.equal(missing.status, 404);
  assert.match(String(missing.body), /Config entry not found for "service-router" \/ "nope"/);

  // Check-and-set: 0 only creates; the current ModifyIndex replaces; a stale one does not.
  assert.equal(await (await write(a, { Kind: 'service-defaults', Name: 'web', Protocol: 'http' }, '?cas=0')).json(), false);
  const sd = (await read(a, '/v1/config/service-defaults/web')).body as { ModifyIndex: number };
  assert.equal(await (await write(a, { Kind: 'service-defaults', Name: 'web', Protocol: 'http2' }, `?cas=${sd.ModifyIndex}`)).json(), true);
  assert.equal(await (await write(a, { Kind: 'service-defaults', Name: 'web', Protocol: 'http' }, `?cas=${sd.ModifyIndex}`)).json(), false);

  // A blocking list wakes on a write.
  const idx = (await read(a, '/v1/config/proxy-defaults')).index;
  const waiting = read(a, `/v1/config/proxy-defaults?index=${idx}&wait=5s`);
  await write(a, { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } });
  const woke = await waiting;
  assert.ok(woke.index > idx);
  assert.deepEqual((woke.body as { Name: string }[]).map((e) => e.Name), ['global']);

  for (const kind of ['service-router', 'service-splitter', 'service-resolver', 'service-defaults', 'proxy-defaults']) {
    const name = kind === 'proxy-defaults' ? 'global' : 'web';
    assert.equal((await a.api(`/v1/config/${kind}/${name}`, { method: 'DELETE' })).status, 200);
  }
  assert.equal((await a.api('/v1/config/service-defaults/never-there', { method: 'DELETE' })).status, 200, 'deleting nothing is fine, as in Consul');
  assert.deepEqual((await read(a, '/v1/config/service-router')).body, []);
});

test('bad entries get a 400 that says what is wrong, and nothing stored changes', async () => {
  assert.equal((await write(a, { Kind: 'service-defaults', Name: 'api', Protocol: 'http' })).status, 200);
  assert.equal((await write(a, { Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathPrefix: '/v1' } }, Destination: { Service: 'api-v1' } }] })).status, 200);
  const before = (await read(a, '/v1/config/service-router')).index;
  const cases: [unknown, RegExp][] = [
    ['{not json', /Request decode failed/],
    [[1, 2], /one JSON object/],
    [{ Name: 'x' }, /Kind is required/],
    [{ Kind: 'mesh-gateway-ish', Name: 'x' }, /invalid config entry kind: mesh-gateway-ish/],
    [{ Kind: 'service-defaults' }, /Name is required/],
    [{ Kind: 'service-defaults', Name: 'bad name!' }, /invalid name/],
    [{ Kind: 'service-defaults', Name: 'x', Protocol: 'udp' }, /Protocol "udp" is not supported/],
    [{ Kind: 'service-defaults', Name: 'x', Protocl: 'http' }, /unknown field "Protocl"/],
    [{ Kind: 'service-defaults', Name: 'x', Protocol: 7 }, /cannot unmarshal number into Go struct field \.Protocol of type string/],
    [{ Kind: 'proxy-defaults', Name: 'local' }, /only "global" is supported/],
    [{ Kind: 'service-router', Name: 'plain', Routes: [] }, /has protocol "tcp", which does not support routing/],
    [{ Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 90 }] }, /sum of all split weights must be 100, not 90\.00/],
    [{ Kind: 'service-splitter', Name: 'api', Splits: [] }, /no splits configured/],
    [{ Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathExact: 'v1', PathPrefix: '/v1' } } }] }, /at most one of PathExact, PathPrefix, or PathRegex/],
    [{ Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathPrefix: 'v1' } } }] }, /PathPrefix doesn't start with '\/'/],
    [{ Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathRegex: '([a-' } } }] }, /invalid regular expression/],
    [{ Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { Methods: ['FETCH'] } } }] }, /invalid method "FETCH"/],
    [{ Kind: 'service-router', Name: 'api', Routes: [{ Destination: { RequestTimeout: 'soon' } }] }, /RequestTimeout/],
    [{ Kind: 'service-router', Name: 'api', Routes: [{ Destination: { NumRetries: -1 } }] }, /cannot unmarshal number -1 into Go struct field \.Routes\.Destination\.NumRetries of type uint/],
    [{ Kind: 'service-router', Name: 'api', Routes: [{ Destination: { PrefixRewrite: '/x' } }] }, /PrefixRewrite without configuring either PathExact or PathPrefix/],
    [{ Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v3', Subsets: { v1: {} } }, /DefaultSubset "v3" is not a valid subset/],
    [{ Kind: 'service-resolver', Name: 'api', Subsets: { V1: {} } }, /Subset "V1" is invalid/],
    [{ Kind: 'service-resolver', Name: 'api', LoadBalancer: { Policy: 'fastest' } }, /Bad LoadBalancer policy: "fastest"/],
    [{ Kind: 'service-resolver', Name: 'api', LoadBalancer: { Policy: 'round_robin', HashPolicies: [{ Field: 'header', FieldValue: 'x' }] } }, /HashPolicies specified for non-hash-based Policy/],
    [{ Kind: 'service-resolver', Name: 'api', ConnectTimeout: '5 parsecs' }, /ConnectTimeout/],
    // A defaults change may not leave a routed service on tcp.
    [{ Kind: 'service-defaults', Name: 'api', Protocol: 'tcp' }, /service-router "api" needs an HTTP-family protocol/],
  ];
  for (const [body, want] of cases) {
    const r = await a.api('/v1/config', put(typeof body === 'string' ? body : JSON.stringify(body)));
    const text = await r.text();
    assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${text}`);
    assert.match(text, want, JSON.stringify(body));
  }
  const del = await a.api('/v1/config/service-defaults/api', { method: 'DELETE' });
  assert.equal(del.status, 400);
  assert.match(await del.text(), /delete the service-router first/);
  assert.equal((await a.api('/v1/config/bogus-kind')).status, 400);
  assert.equal((await a.api('/v1/config?cas=abc', put({ Kind: 'service-defaults', Name: 'x' }))).status, 400);
  assert.equal((await read(a, '/v1/config/service-router')).index, before, 'nothing stored changed');
  assert.equal((await read(a, '/v1/config/service-defaults/api')).status, 200);
  await a.api('/v1/config/service-router/api', { method: 'DELETE' });
  await a.api('/v1/config/service-defaults/api', { method: 'DELETE' });
});

test('entries replicate to the other agent by gossip, deletes too', async () => {
  await write(a, { Kind: 'service-defaults', Name: 'shop', Protocol: 'grpc' });
  await waitFor(async () => assert.equal(((await read(b, '/v1/config/service-defaults/shop')).body as { Protocol: string }).Protocol, 'grpc'), 15_000);
  // A later write on the other agent wins everywhere.
  // (b may still hold a router whose defaults' delete arrived first: that must not block an unrelated write.)
  const w = await write(b, { Kind: 'service-defaults', Name: 'shop', Protocol: 'http2' });
  assert.equal(w.status, 200, await w.text());
  // Gossip usually brings it within a second; a lost datagram under load is repaired by the next push/pull (30 s).
  await waitFor(async () => assert.equal(((await read(a, '/v1/config/service-defaults/shop')).body as { Protocol: string }).Protocol, 'http2'), 45_000);
  assert.equal((await a.api('/v1/config/service-defaults/shop', { method: 'DELETE' })).status, 200);
  await waitFor(async () => assert.equal((await read(b, '/v1/config/service-defaults/shop')).status, 404), 45_000);
});

test('a router replicated before its defaults does not block unrelated writes; breaking a routed service still does', async () => {
  const store = new ConfigEntryStore(join(tempDir(), 'config-entries.json'), 'n1');
  // What a peer can briefly hold: the router arrived, its service-defaults (or their delete) not yet.
  const router = { Kind: 'service-router', Name: 'web', Routes: [], CreateIndex: 1, ModifyIndex: 1 };
  assert.equal(store.merge({ id: 'service-router/web', hlc: { wall: Date.now(), logical: 0, node: 'n2' }, deleted: false, entry: router }), true);
  assert.equal(await store.write({ Kind: 'service-defaults', Name: 'shop', Protocol: 'http2' }), true);
  assert.equal(await store.write({ Kind: 'service-defaults', Name: 'web', Protocol: 'http' }), true);
  await assert.rejects(store.write({ Kind: 'service-defaults', Name: 'web', Protocol: 'tcp' }), /service-router "web" needs an HTTP-family protocol/);
  await assert.rejects(store.delete('service-defaults', 'web'), /delete the service-router first/);
  assert.equal(store.get('service-defaults', 'web')?.Protocol, 'http', 'nothing changed');
  await store.close();
});

test('nodemesh config write, list (table and JSON), read and delete; bad files and CAS conflicts are clear errors', async () => {
  const cli = (...args: string[]) => runCli(['--http-addr', a.url, ...args], { NODEMESH_HTTP_TOKEN: '' });
  const dir = tempDir();
  const file = join(dir, 'cart.json');
  writeFileSync(file, JSON.stringify({ Kind: 'service-defaults', Name: 'cart', Protocol: 'http' }));
  let r = await cli('config', 'write', file);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Config entry written: service-defaults/cart\n');
  r = await cli('config', 'list', '--kind', 'service-defaults');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^NAME\s+WHAT\s+MODIFY INDEX\n/);
  assert.match(r.stdout, /^cart\s+protocol http\s+\d+$/m);
  r = await cli('--format', 'json', 'config', 'list', '--kind', 'service-defaults');
  assert.ok((JSON.parse(r.stdout) as { Name: string }[]).some((e) => e.Name === 'cart'));
  r = await cli('config', 'read', '--kind', 'service-defaults', '--name', 'cart');
  assert.equal((JSON.parse(r.stdout) as { Protocol: string }).Protocol, 'http');
  r = await cli('config', 'write', '--cas', '0', file);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not updated: service-defaults\/cart changed since index 0/);
  writeFileSync(file, '{"Kind": "service-defaults", ');
  r = await cli('config', 'write', file);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /is not JSON/);
  r = await cli('config', 'write', join(dir, 'missing.json'));
  assert.equal(r.code, 2);
  assert.match(r.stderr, /cannot read .*ENOENT/);
  writeFileSync(file, JSON.stringify({ Kind: 'service-splitter', Name: 'cart', Splits: [{ Weight: 50 }] }));
  r = await cli('config', 'write', file);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /agent answered 400: [\s\S]*sum of all split weights must be 100/);
  r = await cli('config', 'delete', '--kind', 'service-defaults', '--name', 'cart');
  assert.equal(r.code, 0, r.stderr);
  r = await cli('config', 'read', '--kind', 'service-defaults', '--name', 'cart');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /404: Config entry not found/);
});
