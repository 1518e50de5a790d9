// The multiplexed tunnel between agents: many streams on one mTLS connection, resets, identity and revocation per stream, peer restart, bad frames.

import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import { after, before, test } from 'node:test';
import { FrameParser, FrameType, header, TUNNEL_ALPN } from '../dataplane/tunnel/tunnel-frames.js';
import type { AgentConfig } from '../config/agent-config.js';
import { put, sharedCa, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { echoApp, roundTrip, type App } from './helpers/tcp-apps.js';
import { waitFor } from './helpers/wait-for.js';

const A = '127.0.14.1'; // the callers' node
const B = '127.0.14.2'; // the api's node
const WEB = '127.0.14.11';
const ADMIN = '127.0.14.12';
const APP = '127.0.14.21';

let a: TestAgent;
let b: TestAgent;
let app: App;
let bConfig: Partial<AgentConfig>;
const ports = { web: 0, admin: 0 };
after(async () => { await a?.stop().catch(() => undefined); await b?.stop().catch(() => undefined); app?.server.close(); });

before(async () => {
  const ca = await sharedCa();
  app = await echoApp(APP);
  bConfig = { node: 'tunnel-b', bind: B, dataDir: tempDir(), serfLanPort: await freePort(B), ...ca };
  b = await startTestAgent(bConfig);
  a = await startTestAgent({ node: 'tunnel-a', bind: A, join: [`${B}:${b.gossip.port}`], ...ca });
  await b.api('/v1/agent/service/register', put({ Name: 'api', Address: APP, Port: app.port, Connect: { SidecarService: {} } }));
  ports.web = await freePort('127.0.0.1');
  ports.admin = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'web', Address: WEB, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: ports.web }] } } } }));
  await a.api('/v1/agent/service/register', put({ Name: 'admin', Address: ADMIN, Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: ports.admin }] } } } }));
  await waitFor(async () => assert.equal((await roundTrip(WEB, ports.web, 'ready')).reply.toString(), 'ready'), 15_000);
});

/** A connection through an upstream that stays open; `say` writes and resolves with the echo. */
async function openConn(from: string, port: number) {
  const s: Socket = connect({ host: '127.0.0.1', port, localAddress: from });
  let closed = false;
  s.on('close', () => { closed = true; });
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  const say = (text: string) => new Promise<string>((resolve) => {
    let got = '';
    const on = (c: Buffer) => { got += c; if (got.length >= text.length) { s.off('data', on); resolve(got); } };
    s.on('data', on);
    s.write(text);
  });
  return { s, say, closed: () => closed };
}

test('200 concurrent connections ride one tunnel per identity, each stream gets exactly its own bytes', async () => {
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => roundTrip(WEB, ports.web, `stream-${i}-`.repeat(50 + (i % 7) * 300))));
  results.forEach((r, i) => assert.equal(r.reply.toString(), `stream-${i}-`.repeat(50 + (i % 7) * 300)));
  assert.equal(await a.dataPlane.tunnels.count(), 1, 'web → api on agent B: one tunnel');
  // A megabyte each way on one stream while others run: flow control lets it through whole.
  const big = Buffer.alloc(8 * 1024 * 1024, 7);
  const [bulk, small] = await Promise.all([roundTrip(WEB, ports.web, big), roundTrip(WEB, ports.web, 'small')]);
  assert.equal(bulk.reply.length, big.length);
  assert.equal(small.reply.toString(), 'small');
});

test('one stream reset leaves the others on the tunnel untouched', async () => {
  const conns = await Promise.all([openConn(WEB, ports.web), openConn(WEB, ports.web), openConn(WEB, ports.web)]);
  for (const c of conns) assert.equal(await c.say('hello'), 'hello');
  conns[1].s.resetAndDestroy();
  await waitFor(() => assert.ok(conns[1].closed(), 'the reset stream is closed'));
  assert.equal(await conns[0].say('still'), 'still');
  assert.equal(await conns[2].say('fine'), 'fine');
  for (const c of conns) c.s.destroy();
});

test('identity and revocation per stream: a deny for admin closes admin\'s streams only; web\'s stay open', async () => {
  const web = await openConn(WEB, ports.web);
  const admin = await openConn(ADMIN, ports.admin);
  assert.equal(await web.say('w1'), 'w1');
  assert.equal(await admin.say('a1'), 'a1');
  assert.equal(await a.dataPlane.tunnels.count(), 2, 'one tunnel per source identity');
  const r = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'admin', DestinationName: 'api', Action: 'deny' }) });
  const { ID } = await r.json() as { ID: string };
  await waitFor(() => assert.ok(admin.closed(), 'admin\'s open stream revoked'), 10_000);
  assert.equal(web.closed(), false);
  assert.equal(await web.say('w2'), 'w2', 'web\'s stream on its own tunnel still works');
  assert.equal((await roundTrip(ADMIN, ports.admin, 'again')).reply.length, 0, 'new admin streams refused');
  assert.equal((await roundTrip(WEB, ports.web, 'web ok')).reply.toString(), 'web ok');
  await a.api(`/v1/connect/intentions/${ID}`, { method: 'DELETE' });
  await waitFor(async () => assert.equal((await roundTrip(ADMIN, ports.admin, 'back')).reply.toString(), 'back'), 10_000);
  web.s.destroy();
});

test('a TLS peer with a valid certificate that sends bad frames loses its tunnel; the listener keeps serving', async () => {
  const leaf = await (await a.api('/v1/agent/connect/ca/leaf/web')).json() as { CertPEM: string; PrivateKeyPEM: string };
  const roots = (await (await a.api('/v1/agent/connect/ca/roots')).json() as { Roots: { RootCert: string }[] }).Roots.map((x) => x.RootCert);
  const port = ((await (await b.api('/v1/agent/services')).json()) as Record<string, { Port: number }>)['api-sidecar-proxy'].Port;
  for (const junk of [Buffer.from([9, 0, 0, 0, 1, 0, 0, 0, 0]), Buffer.concat([header(FrameType.Open, 1, 0), header(FrameType.Data, 1, 0xffffffff)]), header(FrameType.Open, 2, 0), Buffer.from('GET / HTTP/1.1\r\n\r\n')]) {
    const closed = await new Promise<boolean>((resolve) => {
      const raw = connect({ host: B, port, localAddress: WEB });
      const s = tlsConnect({ socket: raw, key: leaf.PrivateKeyPEM, cert: leaf.CertPEM, ca: roots, ALPNProtocols: [TUNNEL_ALPN], checkServerIdentity: () => undefined });
      s.on('secureConnect', () => { assert.equal(s.alpnProtocol, TUNNEL_ALPN); s.write(junk); });
      s.on('error', () => undefined);
      s.resume(); // read what the agent sends (ACKs) so its close is seen
      s.on('close', () => resolve(true));
      setTimeout(() => { s.destroy(); resolve(false); }, 5000).unref();
    });
    assert.equal(closed, true, `tunnel closed after ${junk.toString('hex').slice(0, 24)}`);
  }
  assert.equal((await roundTrip(WEB, ports.web, 'after junk')).reply.toString(), 'after junk');
});

test('the peer agent restarts: open streams close, new connections open a new tunnel', async () => {
  const open = await openConn(WEB, ports.web);
  assert.equal(await open.say('before'), 'before');
  await b.stop();
  await waitFor(() => assert.ok(open.closed(), 'streams of the dead tunnel are closed'), 30_000);
  // Restarted as an upgrade would: same data dir, joining the pool again.
  b = await startTestAgent({ ...bConfig, join: [`${A}:${a.gossip.port}`] });
  await waitFor(async () => assert.equal((await roundTrip(WEB, ports.web, 'after restart')).reply.toString(), 'after restart'), 20_000);
});

test('a reply larger than the stream window survives the app closing at once, even with a slow reader', async () => {
  const big = Buffer.alloc(5 * 1024 * 1024 + 1000, 3);
  const blaster = createServer((sock) => { sock.on('error', () => undefined); sock.end(big); });
  await new Promise<void>((r) => blaster.listen(0, '127.0.14.22', r));
  await b.api('/v1/agent/service/register', put({ Name: 'blaster', Address: '127.0.14.22', Port: (blaster.address() as { port: number }).port, Connect: { SidecarService: {} } }));
  const up = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'reader', Address: '127.0.14.13', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'blaster', LocalBindPort: up }] } } } }));
  await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/blaster?passing')).json()) as unknown[]).length, 1), 15_000);
  const got = await new Promise<number>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: up, localAddress: '127.0.14.13' });
    let n = 0;
    s.on('error', () => undefined);
    s.pause();
    setTimeout(() => s.resume(), 1500); // the app has long closed by now
    s.on('data', (c: Buffer) => { n += c.length; });
    s.on('close', () => resolve(n));
  });
  assert.equal(got, big.length, 'every byte of the reply arrived');
  blaster.close();
});

test('stream ids must increase: a reused id closes the tunnel (no RESET flood)', async () => {
  const leaf = await (await a.api('/v1/agent/connect/ca/leaf/web')).json() as { CertPEM: string; PrivateKeyPEM: string };
  const roots = (await (await a.api('/v1/agent/connect/ca/roots')).json() as { Roots: { RootCert: string }[] }).Roots.map((x) => x.RootCert);
  const port = ((await (await b.api('/v1/agent/services')).json()) as Record<string, { Port: number }>)['api-sidecar-proxy'].Port;
  const closed = await new Promise<boolean>((resolve) => {
    const raw = connect({ host: B, port, localAddress: WEB });
    const s = tlsConnect({ socket: raw, key: leaf.PrivateKeyPEM, cert: leaf.CertPEM, ca: roots, ALPNProtocols: [TUNNEL_ALPN], checkServerIdentity: () => undefined });
    s.on('secureConnect', () => s.write(Buffer.concat(Array.from({ length: 50 }, () => header(FrameType.Open, 1, 0)))));
    s.on('error', () => undefined);
    s.resume();
    s.on('close', () => resolve(true));
    setTimeout(() => { s.destroy(); resolve(false); }, 5000).unref();
  });
  assert.equal(closed, true);
});

test('a peer that completes the handshake but never answers an OPEN is taken for dead: the connection moves to a live instance', async () => {
  // A black hole: a valid `api` certificate and the tunnel's ALPN, and then silence.
  const leaf = await (await b.api('/v1/agent/connect/ca/leaf/api')).json() as { CertPEM: string; PrivateKeyPEM: string };
  const roots = (await (await b.api('/v1/agent/connect/ca/roots')).json() as { Roots: { RootCert: string }[] }).Roots.map((x) => x.RootCert);
  const hole = tlsCreateServer({ key: leaf.PrivateKeyPEM, cert: leaf.CertPEM, ca: roots, requestCert: true, ALPNProtocols: [TUNNEL_ALPN] }, (s) => { s.on('error', () => undefined); });
  await new Promise<void>((r) => hole.listen(0, '127.0.14.31', r));
  const holePort = (hole.address() as { port: number }).port;
  await a.api('/v1/agent/service/register', put({ Name: 'api-hole', Kind: 'connect-proxy', Address: '127.0.14.31', Port: holePort, Proxy: { DestinationServiceName: 'api' } }));
  const up = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'prober', Address: '127.0.14.14', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: up, Config: { connect_timeout_ms: 300 } }] } } } }));
  await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/api')).json()) as unknown[]).length, 2), 10_000);
  // Round robin lands on the black hole for some of these; every one still gets its echo.
  for (let i = 0; i < 4; i++) {
    await waitFor(async () => assert.equal((await roundTrip('127.0.14.14', up, `probe-${i}`)).reply.toString(), `probe-${i}`), 10_000);
  }
  await a.api('/v1/agent/service/deregister/api-hole', put());
  hole.close();
});

test('frame parser: headers split across reads, data streamed in slices, bad frames refused', () => {
  const got: string[] = [];
  const p = new FrameParser({ control: (t, id, pl) => got.push(`c${t}/${id}/${pl.toString()}`), data: (id, sl) => got.push(`d${id}/${sl.toString()}`) });
  const bytes = Buffer.concat([header(FrameType.Open, 1, 0), header(FrameType.Data, 1, 6), Buffer.from('abcdef'), header(FrameType.Reset, 1, 3), Buffer.from('why')]);
  for (let i = 0; i < bytes.length; i += 4) p.push(bytes.subarray(i, i + 4));
  assert.deepEqual(got.filter((x) => x.startsWith('c')), ['c1/1/', 'c4/1/why']);
  assert.equal(got.filter((x) => x.startsWith('d')).map((x) => x.slice(3)).join(''), 'abcdef');
  assert.throws(() => new FrameParser({ control: () => undefined, data: () => undefined }).push(header(9 as FrameType, 1, 0)), /unknown frame type 9/);
  assert.throws(() => new FrameParser({ control: () => undefined, data: () => undefined }).push(header(FrameType.Data, 1, 2 * 1024 * 1024)), /over the limit/);
  assert.throws(() => new FrameParser({ control: () => undefined, data: () => undefined }).push(header(FrameType.Fin, 0, 0)), /stream 0/);
});

test('a draining agent says GOAWAY: its open streams finish, new connections go to another instance without a reset', async () => {
  const other = await echoApp('127.0.14.41');
  const c = await startTestAgent({ node: 'tunnel-c', bind: '127.0.14.3', join: [`${A}:${a.gossip.port}`], caFile: bConfig.caFile, caKeyFile: bConfig.caKeyFile, defaultIntentionPolicy: 'allow', drainTimeoutMs: 3000 });
  const open: Awaited<ReturnType<typeof openConn>>[] = [];
  try {
    await c.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.14.41', Port: other.port, Connect: { SidecarService: {} } }));
    await waitFor(async () => assert.equal(((await (await a.api('/v1/health/connect/api?passing')).json()) as unknown[]).length, 2), 15_000);
    // Streams to both instances, so B's tunnel is open when B starts draining.
    for (let i = 0; i < 4; i++) open.push(await openConn(WEB, ports.web));
    for (const o of open) assert.equal(await o.say('x'), 'x');
    const stopping = b.stop();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => roundTrip(WEB, ports.web, `during-drain-${i}`)));
    results.forEach((r, i) => assert.equal(r.reply.toString(), `during-drain-${i}`));
    await stopping;
  } finally {
    for (const o of open) o.s.destroy();
    await c.stop();
    other.server.close();
  }
});

test('what one tunnel holds for slow readers is bounded; reading again lets every stream through', async () => {
  const { TunnelSession } = await import('../dataplane/tunnel/tunnel-session.js');
  const streams: import('node:stream').Duplex[] = [];
  let reading = false;
  let total = 0;
  const take = (s: import('node:stream').Duplex) => s.on('data', (c: Buffer) => { total += c.length; });
  const srv = createServer({ allowHalfOpen: true }, (sock) => {
    new TunnelSession(sock as never, 'server', (st) => { streams.push(st); if (reading) take(st); });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.14.51', r));
  const c = connect({ host: '127.0.14.51', port: (srv.address() as { port: number }).port, localAddress: '127.0.14.52' });
  c.on('error', () => undefined);
  c.resume(); // ACKs and WINDOWs from the server are not needed here
  await new Promise((r) => c.once('connect', r));
  const chunk = Buffer.alloc(64 * 1024, 1);
  for (let id = 1; id < 400; id += 2) {
    c.write(header(FrameType.Open, id, 0));
    for (let i = 0; i < 16; i++) { c.write(header(FrameType.Data, id, chunk.length)); c.write(chunk); } // one window each
  }
  await waitFor(() => assert.ok(streams.reduce((n, s) => n + s.readableLength, 0) >= 60 * 2 ** 20, 'the server filled up to its cap'));
  await new Promise((r) => setTimeout(r, 500));
  const held = streams.reduce((n, s) => n + s.readableLength, 0);
  assert.ok(held < 70 * 2 ** 20, `held ${held} bytes for 200 MiB sent`);
  assert.ok(streams.length < 200, 'the rest waits in TCP, not in our memory');
  reading = true;
  for (const s of streams) take(s);
  await waitFor(() => assert.equal(total, 200 * 2 ** 20), 20_000);
  assert.equal(streams.length, 200);
  c.destroy();
  srv.close();
});
