// Hostile requests against L7 intentions, sent over mTLS with an allowed leaf straight to a service's public listener:
// smuggling, path encodings, underscore headers. Behind the mesh: a Node `http` app and a Python `wsgiref` app; neither
// may ever serve what the intention denies. One agent on 127.0.175.1; apps 127.0.175.11 (node) and .12 (python).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { after, before, test } from 'node:test';
import { importPrivateKey, signLeaf } from '../agent/ca/x509-certs.js';
import { put, startTestAgent, type TestAgent } from './helpers/agent-process.js';
import { poolCredentials } from './helpers/pool-credentials.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

const BIND = '127.0.175.1';
const NODE_APP = '127.0.175.11';
const PY_APP = '127.0.175.12';

let agent: TestAgent;
let nodeApp: Server;
let py: ChildProcess | undefined;
let leaf: { certPem: string; keyPem: string };
let rootPem = '';
const ports: Record<string, number> = {};
/** What each app served: path (as the app read it) and header names. */
const served: Record<string, { path: string; headers: string[] }[]> = { node: [], python: [] };

const PY = `
import json, sys
from wsgiref.simple_server import make_server, WSGIRequestHandler
class Quiet(WSGIRequestHandler):
    def log_message(self, *a): pass
def app(environ, start):
    print(json.dumps({"path": environ.get("PATH_INFO", ""), "headers": [k for k in environ if k.startswith("HTTP_")]}), flush=True)
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start("200 OK", [("Content-Type", "text/plain")])
    return [b"python app"]
srv = make_server(sys.argv[1], int(sys.argv[2]), app, handler_class=Quiet)
print("READY", flush=True)
srv.serve_forever()
`;

before(async () => {
  const { root } = await poolCredentials([]);
  rootPem = root.certPem;
  agent = await startTestAgent({ node: 'bypass-1', bind: BIND, caFile: root.caFile, caKeyFile: root.caKeyFile, defaultIntentionPolicy: 'deny' });
  const td = agent.ca.trustDomain;
  leaf = await signLeaf({ issuerCertPem: root.certPem, issuerKey: (await importPrivateKey(root.keyPem)).key, spiffeId: `spiffe://${td}/ns/default/dc/dc1/svc/web`, commonName: 'web', ttlMs: 3_600_000 });
  nodeApp = createServer((req, res) => {
    served.node.push({ path: req.url ?? '', headers: Object.keys(req.headers) });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('node app'));
  });
  await new Promise<void>((r) => nodeApp.listen(0, NODE_APP, r));
  const pyPort = await freePort(PY_APP);
  py = spawn('python3', ['-c', PY, PY_APP, String(pyPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    py!.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'READY') resolve();
        else if (line.startsWith('{')) served.python.push(JSON.parse(line) as { path: string; headers: string[] });
      }
    });
    py!.once('exit', (code) => reject(new Error(`python app exited ${code}`)));
  });
  for (const [name, host, port] of [['shop', NODE_APP, (nodeApp.address() as { port: number }).port], ['shop-py', PY_APP, pyPort]] as const) {
    assert.equal((await agent.api('/v1/config', put({ Kind: 'service-defaults', Name: name, Protocol: 'http' }))).status, 200);
    assert.equal((await agent.api('/v1/agent/service/register', put({ Name: name, Address: host, Port: port, Connect: { SidecarService: {} } }))).status, 200);
    const r = await agent.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({
      SourceName: 'web', DestinationName: name, Permissions: [
        { Action: 'deny', HTTP: { PathPrefix: '/admin' } },
        { Action: 'deny', HTTP: { Header: [{ Name: 'X-Debug', Present: true }] } },
        { Action: 'allow', HTTP: { PathPrefix: '/' } },
      ] }) });
    assert.equal(r.status, 200, await r.text());
  }
  const services = await (await agent.api('/v1/agent/services')).json() as Record<string, { Port: number }>;
  ports.shop = services['shop-sidecar-proxy'].Port;
  ports['shop-py'] = services['shop-py-sidecar-proxy'].Port;
  await waitFor(async () => assert.match(await raw('shop', 'GET /ready HTTP/1.1\r\nHost: a\r\n\r\n'), /^HTTP\/1\.1 200/), 10_000);
});

after(async () => {
  py?.kill('SIGKILL');
  nodeApp?.close();
  await agent?.stop().catch(() => undefined);
});

/** Sends raw bytes over mTLS (web's leaf) to a service's public listener; resolves with everything it answers. */
function raw(service: string, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: BIND, port: ports[service], cert: leaf.certPem, key: leaf.keyPem, ca: [rootPem], ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
    let out = '';
    // Done at the first answer's head (plus a moment for anything after it), at close, or after 3 s.
    const done = () => { s.end(); resolve(out); };
    s.on('data', (c: Buffer) => {
      out += c.toString('latin1');
      if (out.includes('\r\n\r\n')) setTimeout(done, 150).unref();
    });
    s.on('error', () => resolve(out));
    s.on('close', () => resolve(out));
    s.on('secureConnect', () => s.write(bytes));
    setTimeout(done, 3000).unref();
  });
}

const SMUGGLED = 'POST /admin/delete-all HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n';
const chunk = (body: string) => `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;

for (const service of ['shop', 'shop-py']) {
  test(`${service}: a request smuggled in a chunked body is forwarded as a body, never as a second request`, async () => {
    for (const method of ['DELETE', 'GET', 'POST']) {
      const answer = await raw(service, `${method} /hello HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(SMUGGLED)}`);
      assert.match(answer, /^HTTP\/1\.1 200/, `${method} with a chunked body is served`);
    }
    for (const bad of [
      `POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: ${chunk(SMUGGLED).length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(SMUGGLED)}`,
      `POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
      `POST /hello HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n${chunk(SMUGGLED)}`,
      `GET /hello HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n`,
      `GET /hello HTTP/1.1\nHost: a\n\n${SMUGGLED.replace(/\r/g, '')}`,
    ]) {
      const answer = await raw(service, bad);
      assert.doesNotMatch(answer, /^HTTP\/1\.1 200/, `refused: ${JSON.stringify(bad.slice(0, 70))}`);
    }
  });

  test(`${service}: encodings of /admin are decided as /admin (403) or refused (400); underscore headers are refused`, async () => {
    for (const p of ['/admin', '/%61dmin', '//admin', '/x/../admin', '/x/%2e%2e/admin', '/./admin/x', '/ADMIN/../admin']) {
      const answer = await raw(service, `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 403/, `${p} denied`);
    }
    for (const p of ['/\\admin', '/x/..%2fadmin', '/x/..%5cadmin', '/%zz']) {
      const answer = await raw(service, `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 400/, `${p} refused`);
    }
    assert.match(await raw(service, 'GET /ok HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n\r\n'), /^HTTP\/1\.1 403/, 'X-Debug denied');
    assert.match(await raw(service, 'GET /ok HTTP/1.1\r\nHost: a\r\nX_Debug: 1\r\n\r\n'), /^HTTP\/1\.1 400/, 'X_Debug refused');
    assert.match(await raw(service, 'GET /ok/%7Euser HTTP/1.1\r\nHost: a\r\n\r\n'), /^HTTP\/1\.1 200/, 'allowed paths still served');
  });
}

test('neither app ever served a denied path or saw a debug header', () => {
  console.log(`# node app served ${served.node.length} requests, python app ${served.python.length}`);
  for (const [app, list] of Object.entries(served)) {
    assert.ok(list.length > 0, `${app} served something`);
    for (const r of list) {
      const path = decodeURIComponent(r.path.replace(/\\/g, '/')).replace(/\/+/g, '/');
      assert.doesNotMatch(path, /\/admin/i, `${app} served ${r.path}`);
      assert.ok(!r.headers.some((h) => /x[-_]debug/i.test(h)), `${app} saw a debug header`);
    }
  }
  assert.ok(served.node.some((r) => r.path === '/hello'), 'the chunked requests reached the node app as /hello');
});
