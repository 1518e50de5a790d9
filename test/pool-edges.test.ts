// The pool-wide view without Prometheus: each agent serves its edges on its peer endpoint (mTLS, agent certificates
// signed by each node's own intermediate), and GET /v1/pool/edges on any agent lists every agent's. Attacks first:
// a client without a certificate, with a foreign root's, with a node's key speaking for another node, or a peer
// that answers garbage, gets nothing or changes nothing.
// Agents pe-a 127.0.29.1 (caller web), pe-b 127.0.29.2 (api); apps 127.0.29.11 (api), 127.0.29.21 (web).

import assert from 'node:assert/strict';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { after, before, test } from 'node:test';
import { agentIdentityUri } from '../identity/spiffe/spiffe-id.js';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { importPrivateKey, signLeaf } from '../identity/ca/x509-certs.js';
import { fetchPeerEdges } from '../api/peer-endpoint.js';
import { readEdgeSummaries } from '../dataplane/metrics/edge-stats.js';
import { put, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { poolCredentials, type PoolCredentials } from './helpers/pool-credentials.js';
import { waitFor } from './helpers/wait-for.js';

let creds: PoolCredentials;
let a: TestAgent;
let b: TestAgent;
let app: Server;
let upstream = 0;

interface Member { Name: string; Tags: Record<string, string> }
interface NodeEdges { Node: string; Edges?: { direction: string; source: string; destination: string; connections: number; openConnections: number }[]; Error?: string }

const agentOpts = (node: string, n: number) => ({ dev: false, node, bind: `127.0.29.${n}`, dataDir: tempDir(), encrypt: creds.encrypt, waive: ['acl_token' as const], defaultIntentionPolicy: 'allow' as const, ...creds.nodes[node] });
const peerPortOf = async (x: TestAgent, node: string) => Number(((await (await x.api('/v1/agent/members')).json()) as Member[]).find((m) => m.Name === node)!.Tags.sp);

function call(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: '127.0.0.1', port: upstream, path, localAddress: '127.0.29.21' }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    r.on('error', reject);
    r.end();
  });
}

/** A client certificate for `node`, signed by `issuer` (a node's intermediate or a root), for the attack tests. */
async function agentCert(issuer: { certPem: string; keyPem: string }, trustDomain: string, node: string) {
  const leaf = await signLeaf({ issuerCertPem: issuer.certPem, issuerKey: (await importPrivateKey(issuer.keyPem)).key, spiffeId: agentIdentityUri(trustDomain, 'dc1', node), commonName: node, ttlMs: 3_600_000 });
  return { cert: `${leaf.certPem.trim()}\n${issuer.certPem.trim()}\n`, key: leaf.keyPem };
}

/** GET the edges from b's peer endpoint as a client with `cert` (or none): the status, or the TLS error. */
function askB(client: { cert: string; key: string } | undefined): Promise<number | string> {
  return peerPortOf(a, 'pe-b').then((port) => new Promise((resolve) => {
    const r = httpsRequest({ host: '127.0.29.2', port, path: '/v1/nodemesh/edges', ca: creds.root.certPem, ...client, agent: false, checkServerIdentity: () => undefined, timeout: 3000 }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    r.on('error', (e) => resolve(e.message));
    r.end();
  }));
}

before(async () => {
  creds = await poolCredentials(['pe-a', 'pe-b']);
  b = await startTestAgent(agentOpts('pe-b', 2));
  a = await startTestAgent({ ...agentOpts('pe-a', 1), join: [`127.0.29.2:${b.gossip.port}`] });
  app = createHttpServer((req, res) => { req.resume(); res.end('ok'); });
  await new Promise<void>((r) => app.listen(0, '127.0.29.11', r));
  await b.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.29.11', Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } }));
  upstream = await freePort('127.0.0.1');
  await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.29.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstream }] } } } }));
  await waitFor(async () => assert.equal(await call('/'), 200, 'web reaches api'), 20_000);
  for (let i = 0; i < 9; i++) await call(`/x${i}`);
});

after(async () => {
  await a?.stop().catch(() => undefined);
  await b?.stop().catch(() => undefined);
  app?.close();
});

test('GET /v1/pool/edges on either agent lists both agents\' edges: the caller\'s side from a, the callee\'s from b', async () => {
  for (const x of [a, b]) {
    const { Nodes } = (await (await x.api('/v1/pool/edges')).json()) as { Nodes: NodeEdges[] };
    assert.deepEqual(Nodes.map((n) => [n.Node, n.Error]), [['pe-a', undefined], ['pe-b', undefined]]);
    const byNode = new Map(Nodes.map((n) => [n.Node, n.Edges!]));
    // api speaks plain TCP here: the edge is its connections (an http service's edges count requests too, test/metrics-naming.test.ts).
    const out = byNode.get('pe-a')!.find((e) => e.direction === 'outbound' && e.source === 'web' && e.destination === 'api');
    assert.ok(out && out.connections >= 1, 'a carried web\'s connections out');
    const inb = byNode.get('pe-b')!.find((e) => e.direction === 'inbound' && e.source === 'web' && e.destination === 'api');
    assert.ok(inb && inb.connections >= 1, 'b saw them come in');
  }
});

test('the peer endpoint refuses a client with no certificate, a foreign root\'s, or one node\'s key speaking for another', async () => {
  const none = await askB(undefined);
  assert.ok(typeof none === 'string' || none === 403, `no certificate: ${none}`);
  const foreign = await CertificateAuthority.createRoot();
  const alien = await askB(await agentCert(foreign, foreign.trustDomain, 'pe-a'));
  assert.equal(typeof alien, 'string', `a foreign root's agent is refused in the handshake (${alien})`);
  // pe-a's intermediate signing a certificate that claims to be pe-b's agent (or a node not in the pool).
  const impostor = await askB(await agentCert(creds.nodes['pe-a'], creds.trustDomain, 'pe-b'));
  assert.equal(impostor, 403, 'a node\'s key cannot speak for another node');
  const outsider = await askB(await agentCert(creds.root, creds.trustDomain, 'not-a-member'));
  assert.equal(outsider, 403, 'an agent that is not a member gets nothing');
  assert.equal(await askB(await agentCert(creds.nodes['pe-a'], creds.trustDomain, 'pe-a')), 200, 'pe-a\'s real agent identity is served');
  // And nothing of it changed what b serves.
  assert.equal(((await (await b.api('/v1/agent/members')).json()) as unknown[]).length, 2);
});

test('the client believes only the node it asked: an answer from another node\'s agent, or a malformed one, is refused', async () => {
  const port = await peerPortOf(a, 'pe-b');
  const c = await agentCert(creds.nodes['pe-a'], creds.trustDomain, 'pe-a');
  const asA = { certPem: c.cert, keyPem: c.key, roots: [creds.root.certPem], trustDomain: creds.trustDomain };
  // pe-b's endpoint, asked as if it were pe-c: its certificate names pe-b, so the answer is not taken.
  await assert.rejects(fetchPeerEdges({ node: 'pe-c', addr: '127.0.29.2', port }, asA), /agent of pe-b, not of pe-c/);
  assert.ok((await fetchPeerEdges({ node: 'pe-b', addr: '127.0.29.2', port }, asA)).length > 0);
  // What a hostile peer could send is read as strictly as an API body.
  for (const bad of [{}, [{ direction: 'sideways' }], [{ direction: 'inbound', source: 'a b', destination: 'x', service: '', subset: '' }],
    [{ direction: 'inbound', source: 'a', destination: 'x', service: '', subset: '', windowSeconds: 60, requests: -1 }],
    [{ direction: 'inbound', source: 'a', destination: 'x', service: '', subset: '', windowSeconds: 60, requests: 0, requestsPerSecond: 0, successRate: null, p50Ms: null, p99Ms: null, connections: 0, openConnections: 0, bytesTx: 0, bytesRx: 0, denied: 1, deniedBy: { '<script>': 1 } }],
    new Array(5000).fill(null)]) {
    assert.throws(() => readEdgeSummaries(bad), /edge|edges/);
  }
});
