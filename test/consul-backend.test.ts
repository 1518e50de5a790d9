// The Consul backend against a real Consul 1.8.7 dev agent and its built-in proxy: registrations, traffic both ways, intentions, CA rotation, Consul outage.
//
// Addresses: Consul 127.0.71.1; the nodemesh agent 127.0.71.2; `api` (behind nodemesh) 127.0.71.3; `web` (behind
// Consul's proxy, upstream api) 127.0.71.4; `db`'s Consul sidecar 127.0.71.5 and `db` itself 127.0.71.6.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { RunningAgent } from '../agent/agent.js';
import { consulMissing, startConsulDev, type ConsulDev } from './helpers/consul-dev.js';
import { put, startConsulModeAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, type App } from './helpers/tcp-apps.js';
import { sleep, waitFor } from './helpers/wait-for.js';

const skip = consulMissing();
const IP = { consul: '127.0.71.1', agent: '127.0.71.2', api: '127.0.71.3', web: '127.0.71.4', dbSidecar: '127.0.71.5', db: '127.0.71.6' };

let consul: ConsulDev;
let agent: RunningAgent & { url: string; api(path: string, init?: RequestInit): Promise<Response> };
let api: App;
let db: App;
const port = { webUpApi: 0, webPublic: 0, dbPublic: 0, nmUpDb: 0, nmUpApi: 0 };

/** Writes `data`, waits for the echo of all of it, then closes; resolves with what came back or the error. */
function exchange(host: string, p: number, data: string, from?: string): Promise<{ reply: string; error?: string }> {
  return new Promise((resolve) => {
    let reply = '';
    const s = connect({ host, port: p, localAddress: from }, () => s.write(data));
    const t = setTimeout(() => { s.destroy(); resolve({ reply, error: 'no echo within 5 s' }); }, 5000);
    s.on('data', (c) => {
      reply += c;
      if (reply.length >= data.length) { clearTimeout(t); s.end(); resolve({ reply }); }
    });
    s.on('error', (e) => { clearTimeout(t); resolve({ reply, error: e.message }); });
    s.on('close', () => { clearTimeout(t); resolve({ reply, error: reply.length < data.length ? 'closed before the echo' : undefined }); });
  });
}

/** An open connection that echoes: `ping` resolves with the echo, `closed` when it goes. */
async function openConnection(host: string, p: number): Promise<{ socket: Socket; ping(x: string): Promise<string>; closed: Promise<void> }> {
  const socket = connect({ host, port: p, allowHalfOpen: true });
  await new Promise<void>((r, j) => { socket.once('connect', () => r()); socket.once('error', j); });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return {
    socket, closed,
    ping: (x) => new Promise((resolve, reject) => {
      let got = '';
      const t = setTimeout(() => reject(new Error('no echo within 3 s')), 3000);
      const on = (c: Buffer) => { got += c; if (got.length >= x.length) { clearTimeout(t); socket.off('data', on); resolve(got); } };
      socket.on('data', on);
      socket.once('close', () => { clearTimeout(t); reject(new Error('closed')); });
      socket.write(x);
    }),
  };
}

const consulSees = async (name: string) => (await consul.call('GET', `/v1/health/connect/${name}?passing`)).json<unknown[]>().length > 0;

before(async () => {
  if (skip) return;
  consul = await startConsulDev(IP.consul);
  api = await echoApp(IP.api);
  db = await echoApp(IP.db);
  for (const k of Object.keys(port) as (keyof typeof port)[]) {
    port[k] = await freePort(k.startsWith('web') ? IP.web : k === 'dbPublic' ? IP.dbSidecar : IP.agent);
  }
  agent = await startConsulModeAgent(consul.addr, { node: 'nm-1', bind: IP.agent });
  // Behind nodemesh: api, and a client `gateway` with upstreams to db (Consul side) and api (nodemesh side).
  assert.equal((await agent.api('/v1/agent/service/register', put({ Name: 'api', Address: IP.api, Port: api.port, Connect: { SidecarService: {} } }))).status, 200);
  assert.equal((await agent.api('/v1/agent/service/register', put({
    Name: 'gateway', Address: IP.agent, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [
      { DestinationName: 'db', LocalBindAddress: IP.agent, LocalBindPort: port.nmUpDb },
      { DestinationName: 'api', LocalBindAddress: IP.agent, LocalBindPort: port.nmUpApi },
    ] } } },
  }))).status, 200);
  // Behind Consul's built-in proxy: web (upstream api) and db. Sidecar checks as in bench/consul-anchor.ts.
  const sidecarChecks = (parent: string, host: string, p: number) => [
    { Name: 'Connect Sidecar Listening', TCP: `${host}:${p}`, Interval: '1s' },
    { Name: `Connect Sidecar Aliasing ${parent}`, AliasService: parent },
  ];
  for (const body of [
    { Name: 'web', Address: IP.web, Port: 1, Connect: { SidecarService: { Address: IP.web, Port: port.webPublic, Checks: sidecarChecks('web', IP.web, port.webPublic), Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindAddress: IP.web, LocalBindPort: port.webUpApi }] } } } },
    { Name: 'db', Address: IP.db, Port: db.port, Connect: { SidecarService: { Address: IP.dbSidecar, Port: port.dbPublic, Checks: sidecarChecks('db', IP.dbSidecar, port.dbPublic), Proxy: { LocalServiceAddress: IP.db, LocalServicePort: db.port } } } },
  ]) {
    const r = await consul.call('PUT', '/v1/agent/service/register', body);
    assert.equal(r.status, 200, r.text);
  }
  consul.proxy(['-sidecar-for', 'web']);
  consul.proxy(['-sidecar-for', 'db']);
  await waitFor(async () => assert.ok(await consulSees('api'), 'nodemesh registered api-sidecar-proxy, passing'), 20_000);
  await waitFor(async () => assert.ok(await consulSees('db'), 'db sidecar passing'), 20_000);
});

after(async () => {
  if (skip) return;
  await agent?.stop();
  await consul?.stop();
  api?.server.close();
  db?.server.close();
});

test('the consul CLI sees nodemesh\'s registrations: services, sidecar kind and port, owner meta', { skip }, async () => {
  const out = await consul.cli(['catalog', 'services']);
  assert.equal(out.code, 0, out.out);
  for (const s of ['api', 'api-sidecar-proxy', 'gateway', 'gateway-sidecar-proxy', 'web', 'db']) assert.match(out.out, new RegExp(`^${s}$`, 'm'));
  const [proxy] = (await consul.call('GET', '/v1/catalog/service/api-sidecar-proxy')).json<{ ServiceKind: string; ServiceAddress: string; ServicePort: number; ServiceProxy: { DestinationServiceName: string }; ServiceMeta: Record<string, string> }[]>();
  assert.equal(proxy.ServiceKind, 'connect-proxy');
  assert.equal(proxy.ServiceAddress, IP.agent);
  assert.equal(proxy.ServiceProxy.DestinationServiceName, 'api');
  assert.equal(proxy.ServiceMeta['nodemesh-node'], 'nm-1');
  assert.equal(agent.backend, 'consul');
  // nodemesh's own API answers catalog reads with Consul's view (web and db are Consul-only).
  const services = await (await agent.api('/v1/catalog/services')).json() as Record<string, string[]>;
  assert.ok('web' in services && 'db' in services && 'api' in services, JSON.stringify(services));
});

test('Consul\'s built-in proxy reaches a service behind nodemesh, and nodemesh reaches one behind Consul\'s proxy; bytes both ways', { skip }, async () => {
  // web (Consul proxy, outbound) → mTLS → nodemesh inbound → api
  const a = await waitFor(async () => {
    const r = await exchange(IP.web, port.webUpApi, 'hello api from consul');
    assert.equal(r.error, undefined);
    return r;
  }, 20_000);
  assert.equal(a.reply, 'hello api from consul');
  const big = 'x'.repeat(256 * 1024);
  assert.equal((await exchange(IP.web, port.webUpApi, big)).reply.length, big.length);
  // The same through the proxy in flags mode, as `consul connect proxy -service web -upstream api:PORT` is run by
  // hand (its upstream listener is 127.0.0.1; -service takes a leaf for web without any registration).
  const flagsPort = await freePort('127.0.0.1');
  consul.proxy(['-service', 'web', '-upstream', `api:${flagsPort}`]);
  const f = await waitFor(async () => {
    const r = await exchange('127.0.0.1', flagsPort, 'hello api from a flags-mode proxy');
    assert.equal(r.error, undefined);
    return r;
  }, 20_000);
  assert.equal(f.reply, 'hello api from a flags-mode proxy');
  // gateway (nodemesh outbound) → mTLS (no tunnel: Consul's proxy does not speak it) → Consul proxy inbound → db
  const b = await waitFor(async () => {
    const r = await exchange(IP.agent, port.nmUpDb, 'hello db from nodemesh');
    assert.equal(r.error, undefined);
    return r;
  }, 20_000);
  assert.equal(b.reply, 'hello db from nodemesh');
  assert.equal((await exchange(IP.agent, port.nmUpDb, big)).reply.length, big.length);
});

test('half-close on nodemesh\'s side: the app behind nodemesh sees a clean end after the echo, not a reset', { skip }, async () => {
  const ended = new Promise<string>((resolve) => {
    api.server.once('connection', (s: Socket) => {
      s.once('end', () => resolve('end'));
      s.once('error', (e) => resolve(`error ${e.message}`));
    });
  });
  const c = await openConnection(IP.web, port.webUpApi);
  assert.equal(await c.ping('before half-close'), 'before half-close');
  c.socket.end();
  assert.equal(await ended, 'end');
  await c.closed;
});

test('a deny intention made in Consul stops both directions and closes an open connection through nodemesh', { skip }, async () => {
  // nodemesh's leg of the open connection: the socket it opened to the app behind it.
  const appSide = new Promise<Socket>((r) => api.server.once('connection', r));
  const open = await openConnection(IP.web, port.webUpApi);
  assert.equal(await open.ping('still allowed'), 'still allowed');
  const appClosed = new Promise<number>((r) => void appSide.then((s) => s.once('close', () => r(Date.now()))));
  const before = agent.consul!.intentions.index;
  const made = await consul.cli(['intention', 'create', '-deny', 'web', 'api']);
  assert.equal(made.code, 0, made.out);
  await waitFor(() => assert.notEqual(agent.consul!.intentions.index, before, 'nodemesh saw the change'), 15_000);
  const seen = Date.now();
  const closedAt = await Promise.race([appClosed, sleep(10_000).then(() => assert.fail('nodemesh kept the denied connection open'))]);
  console.log(`# open connection closed by nodemesh ${Math.max(0, closedAt - seen)} ms after it saw the deny (both legs: app and peer)`);
  // Nothing passes any more, whatever Consul's proxy does with its client side (it keeps it open until it reads EOF).
  await assert.rejects(open.ping('after the deny'));
  open.socket.destroy();
  assert.equal((await consul.call('POST', '/v1/connect/intentions', { SourceName: 'gateway', DestinationName: 'db', SourceType: 'consul', Action: 'deny' })).status, 200);
  // New connections, both directions: refused by nodemesh (web → api) and by Consul's proxy (gateway → db).
  await waitFor(async () => assert.notEqual((await exchange(IP.web, port.webUpApi, 'denied?')).error, undefined), 10_000);
  await waitFor(async () => assert.notEqual((await exchange(IP.agent, port.nmUpDb, 'denied?')).error, undefined), 10_000);
  // The decision endpoint agrees.
  const authz = await (await agent.api('/v1/agent/connect/authorize', { method: 'POST', body: JSON.stringify({ Target: 'api', ClientCertURI: `spiffe://${agent.trust.trustDomain}/ns/default/dc/dc1/svc/web` }) })).json() as { Authorized: boolean; Reason: string };
  assert.equal(authz.Authorized, false);
  assert.match(authz.Reason, /DENY default\/web => default\/api/);
  // Deleted through nodemesh's API (forwarded to Consul): traffic flows again.
  for (const i of (await consul.call('GET', '/v1/connect/intentions')).json<{ ID: string }[]>()) {
    assert.equal((await agent.api(`/v1/connect/intentions/${i.ID}`, { method: 'DELETE' })).status, 200);
  }
  await waitFor(async () => assert.equal((await exchange(IP.web, port.webUpApi, 'allowed again')).error, undefined), 15_000);
  await waitFor(async () => assert.equal((await exchange(IP.agent, port.nmUpDb, 'allowed again')).error, undefined), 15_000);
});

test('a CA root rotation in Consul keeps traffic flowing and new connections present the new chain', { skip }, async () => {
  const open = await openConnection(IP.web, port.webUpApi);
  assert.equal(await open.ping('before rotation'), 'before rotation');
  const oldSerial = agent.leaves.current('api')!.SerialNumber;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const r = await consul.call('PUT', '/v1/connect/ca/configuration', { Provider: 'consul', Config: { PrivateKey: privateKey.export({ type: 'sec1', format: 'pem' }), LeafCertTTL: '72h' } });
  assert.equal(r.status, 200, r.text);
  const roots = (await consul.call('GET', '/v1/connect/ca/roots')).json<{ ActiveRootID: string; Roots: { ID: string; RootCert: string; Active: boolean }[] }>();
  const active = roots.Roots.find((x) => x.Active)!;
  // Consul re-signs leaves within its 30 s jitter window after a root change.
  const leaf = await waitFor(() => {
    const l = agent.leaves.current('api')!;
    assert.notEqual(l.SerialNumber, oldSerial, 'api leaf re-signed');
    return l;
  }, 60_000);
  const activeRoot = new X509Certificate(active.RootCert);
  assert.ok(new X509Certificate(leaf.CertPEM).verify(activeRoot.publicKey), 'the new leaf is signed by the new active root');
  assert.equal(await open.ping('during rotation'), 'during rotation', 'the open connection is untouched');
  // A new connection to nodemesh's public listener presents the new leaf (and Consul's proxy accepts it).
  const webLeaf = (await consul.call('GET', '/v1/agent/connect/ca/leaf/web')).json<{ CertPEM: string; PrivateKeyPEM: string }>();
  const presented = await waitFor(() => new Promise<string>((resolve, reject) => {
    const [proxy] = [...(agent.catalog.getNode('nm-1')?.services.values() ?? [])].filter((s) => s.ID === 'api-sidecar-proxy');
    const s = tlsConnect({ host: IP.agent, port: proxy.Port, cert: webLeaf.CertPEM, key: webLeaf.PrivateKeyPEM, ca: roots.Roots.map((x) => x.RootCert), checkServerIdentity: () => undefined }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial);
    });
    s.on('error', reject);
  }).then((serial) => { assert.equal(serial.toLowerCase().replace(/^0+/, ''), leaf.SerialNumber.replace(/:/g, '').toLowerCase().replace(/^0+/, '')); return serial; }), 10_000);
  assert.ok(presented);
  await waitFor(async () => assert.equal((await exchange(IP.web, port.webUpApi, 'after rotation')).error, undefined), 40_000);
  open.socket.destroy();
});

test('Consul down: open and new connections to known instances keep working, ready says degraded; Consul back: state catches up', { skip }, async () => {
  const open = await openConnection(IP.agent, port.nmUpApi);
  assert.equal(await open.ping('consul up'), 'consul up');
  await consul.halt();
  await waitFor(async () => {
    const r = await agent.api('/v1/agent/ready');
    assert.equal(r.status, 503);
    assert.match(JSON.stringify(await r.json()), /degraded: consul at .* unreachable/);
  }, 30_000);
  assert.match(await (await agent.api('/metrics')).text(), /nodemesh_consul_reachable 0/);
  assert.equal(await open.ping('consul down'), 'consul down', 'the open connection carries on');
  assert.equal((await exchange(IP.agent, port.nmUpApi, 'new while consul is down')).reply, 'new while consul is down');
  // The pass-through API says what is wrong instead of hanging.
  const r = await agent.api('/v1/catalog/services');
  assert.equal(r.status, 503);
  assert.match(await r.text(), /unreachable/);
  // A dev agent comes back empty, with a new CA: nodemesh re-registers and takes the new trust domain and leaves.
  const oldDomain = agent.trust.trustDomain;
  await consul.start();
  await waitFor(async () => assert.equal((await agent.api('/v1/agent/ready')).status, 200), 60_000);
  await waitFor(async () => assert.match((await consul.cli(['catalog', 'services'])).out, /^api-sidecar-proxy$/m), 30_000);
  await waitFor(() => assert.notEqual(agent.trust.trustDomain, oldDomain), 30_000);
  await waitFor(() => assert.match(agent.leaves.current('api')!.ServiceURI, new RegExp(`^spiffe://${agent.trust.trustDomain.replace(/\./g, '\\.')}/`)), 30_000);
  await waitFor(async () => assert.equal((await exchange(IP.agent, port.nmUpApi, 'after catch-up')).error, undefined), 30_000);
  open.socket.destroy();
  await sleep(10);
});

test('anti-entropy: a registration Consul lost comes back; a leaf through the pass-through needs the agent token and a service on this node', { skip }, async () => {
  assert.equal((await consul.call('PUT', '/v1/agent/service/deregister/api-sidecar-proxy')).status, 200);
  assert.equal(await consulSees('api'), false);
  await waitFor(async () => assert.ok(await consulSees('api'), 'api-sidecar-proxy registered again'), 20_000);
  // Token: a second agent with acl_token set (the pass-through is the same code).
  const guarded = await startConsulModeAgent(consul.addr, { node: 'nm-2', bind: '127.0.71.7', aclToken: 'secret-token-1' });
  try {
    const auth = { 'X-Consul-Token': 'secret-token-1' };
    assert.equal((await guarded.api('/v1/agent/service/register', { method: 'PUT', headers: auth, body: JSON.stringify({ Name: 'probe', Port: 9100 }) })).status, 200);
    assert.equal((await guarded.api('/v1/agent/connect/ca/leaf/probe')).status, 403);
    const ok = await guarded.api('/v1/agent/connect/ca/leaf/probe', { headers: auth });
    assert.equal(ok.status, 200);
    // As in gossip mode, only this node's services: api lives behind the other agent.
    const other = await guarded.api('/v1/agent/connect/ca/leaf/api', { headers: auth });
    assert.equal(other.status, 403);
    assert.equal(other.headers.get('x-nodemesh-error'), 'LEAF_NOT_LOCAL');
    assert.match(((await ok.json()) as { PrivateKeyPEM: string }).PrivateKeyPEM, /PRIVATE KEY/);
    assert.equal((await guarded.api('/v1/connect/intentions', { method: 'POST', body: '{}' })).status, 403, 'writes need the token');
    // Consul's own errors come back as Consul said them.
    const bad = await guarded.api('/v1/connect/intentions', { method: 'POST', headers: { 'X-Consul-Token': 'secret-token-1' }, body: JSON.stringify({ SourceName: 'a', DestinationName: 'b', SourceType: 'consul', Action: 'bogus' }) });
    assert.equal(bad.status, 500);
    assert.match(await bad.text(), /Action must be set to 'allow' or 'deny'/);
  } finally {
    await guarded.stop();
  }
});

test('config entries written through nodemesh land in Consul (the pass-through), and read back from it', { skip }, async () => {
  const r = await agent.api('/v1/config', put({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }));
  assert.equal(r.status, 200, await r.text());
  const inConsul = await consul.call('GET', '/v1/config/service-defaults/api');
  assert.equal(inConsul.status, 200);
  assert.equal(inConsul.json<{ Protocol: string }>().Protocol, 'http');
  assert.equal(((await (await agent.api('/v1/config/service-defaults/api')).json()) as { Protocol: string }).Protocol, 'http');
  assert.equal((await agent.api('/v1/config/service-defaults/api', { method: 'DELETE' })).status, 200);
});

test('KV, sessions and locks through nodemesh are Consul\'s: consul kv put/get and consul lock against the agent', { skip }, async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { CONSUL_BIN } = await import('./helpers/consul-dev.js');
  const viaAgent = (...args: string[]) => promisify(execFile)(CONSUL_BIN, args, { env: { ...process.env, CONSUL_HTTP_ADDR: `http://127.0.0.1:${agent.http.port}` }, timeout: 20_000 });
  await viaAgent('kv', 'put', 'app/config', 'v1');
  assert.equal((await viaAgent('kv', 'get', 'app/config')).stdout.trim(), 'v1');
  assert.equal((await consul.call('GET', '/v1/kv/app/config?raw')).text, 'v1', 'stored in Consul');
  // A lock held through the agent: while the child runs, Consul holds the lock key under a session; released after.
  const locked = await viaAgent('lock', 'app/leader', `${CONSUL_BIN} kv get -detailed app/leader/.lock`);
  assert.match(locked.stdout, /^Session\s+[0-9a-f-]{36}$/m, `the child saw the lock held by a session: ${locked.stdout}`);
  assert.equal((await consul.call('GET', '/v1/kv/app/leader/.lock')).status, 404, 'released and cleaned up in Consul');
  await viaAgent('kv', 'delete', 'app/config');
  // Binary values pass byte for byte both ways.
  const bytes = Buffer.from([0, 255, 128, 10, 13, 0xc3, 0x28]);
  assert.equal((await agent.api('/v1/kv/app/blob', { method: 'PUT', body: bytes })).status, 200);
  assert.deepEqual(Buffer.from(await (await agent.api('/v1/kv/app/blob?raw')).arrayBuffer()), bytes);
  await agent.api('/v1/kv/app/blob', { method: 'DELETE' });
});

test('config entries made in Consul drive this agent\'s L7 routing (protocol http, a router with a prefix rewrite)', { skip }, async () => {
  const { createServer: createHttpServer } = await import('node:http');
  const app = createHttpServer((req, res) => res.end(`httpapi saw ${req.url}`));
  await new Promise<void>((r) => app.listen(0, '127.0.71.8', r));
  try {
    assert.equal((await agent.api('/v1/agent/service/register', put({ Name: 'httpapi', Address: '127.0.71.8', Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } }))).status, 200);
    const up = await freePort(IP.agent);
    assert.equal((await agent.api('/v1/agent/service/register', put({ Name: 'gw2', Address: IP.agent, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'httpapi', LocalBindAddress: IP.agent, LocalBindPort: up }] } } } }))).status, 200);
    assert.equal((await consul.call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'httpapi', Protocol: 'http' })).status, 200);
    assert.equal((await consul.call('PUT', '/v1/config', { Kind: 'service-router', Name: 'httpapi', Routes: [{ Match: { HTTP: { PathPrefix: '/v2/' } }, Destination: { PrefixRewrite: '/' } }] })).status, 200);
    await waitFor(async () => {
      const r = await fetch(`http://${IP.agent}:${up}/v2/hello`);
      assert.equal(await r.text(), 'httpapi saw /hello');
    }, 20_000);
  } finally {
    await consul.call('DELETE', '/v1/config/service-router/httpapi');
    await agent.api('/v1/agent/service/deregister/gw2', { method: 'PUT' });
    await agent.api('/v1/agent/service/deregister/httpapi', { method: 'PUT' });
    app.close();
  }
});

test('bad consul addresses are config errors with the expected form', { skip }, async () => {
  const { loadConfig } = await import('../config/config-load.js');
  assert.throws(() => loadConfig({ flags: { consul_addr: 'http://exa mple' }, configFiles: [], configDirs: [], env: {} }), /invalid value for "consul_addr".*http:\/\/127\.0\.0\.1:8500/);
  assert.throws(() => loadConfig({ flags: {}, configFiles: [], configDirs: [], env: { CONSUL_HTTP_ADDR: 'ftp://x/y' } }), /env CONSUL_HTTP_ADDR/);
  assert.equal(loadConfig({ flags: { dev: true }, configFiles: [], configDirs: [], env: { CONSUL_HTTP_ADDR: '127.0.0.1:8500' } }).consulAddr, 'http://127.0.0.1:8500');
});
