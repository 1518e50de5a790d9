// The trust model against a hardened 3-agent pool (per-node intermediates, one policy writer, gossip key, tokens, default
// deny): what a gossip-key holder or one compromised node tries is refused, and the operator's writes still go everywhere.

import assert from 'node:assert/strict';
import { createPrivateKey, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { RecordSigner } from '../identity/authority/record-signer.js';
import { startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { poolCredentials, type PoolCredentials } from './helpers/pool-credentials.js';
import { sleep, waitFor } from './helpers/wait-for.js';

const OPERATOR = 'operator-secret-token';
const NODE_TOKEN = 'node-secret-token';
let creds: PoolCredentials;
let n1: TestAgent; // the policy writer
let n2: TestAgent;
let n3: TestAgent;
const extra: TestAgent[] = [];

const ip = (n: number) => `127.0.15.${n}`;
const hardened = (node: string, n: number) => ({
  dev: false, node, bind: ip(n), dataDir: tempDir(), encrypt: creds.encrypt, aclToken: NODE_TOKEN,
  defaultIntentionPolicy: 'deny' as const, ...creds.nodes[node], policyPort: 0,
});
const withToken = (token: string, init: RequestInit = {}): RequestInit => ({ ...init, headers: { 'X-Consul-Token': token, 'Content-Type': 'application/json' } });
const json = async (a: TestAgent, path: string) => (await a.api(path)).json() as Promise<any>;
const intentionsOf = async (a: TestAgent) => (await json(a, '/v1/connect/intentions')) as { ID: string; SourceName: string; DestinationName: string; Precedence: number; Action: string }[];

before(async () => {
  creds = await poolCredentials(['n1', 'n2', 'n3']);
  n1 = await startTestAgent({ ...hardened('n1', 1), ...creds.policy, operatorToken: OPERATOR });
  const seed = [`${ip(1)}:${n1.gossip.port}`];
  n2 = await startTestAgent({ ...hardened('n2', 2), join: seed });
  n3 = await startTestAgent({ ...hardened('n3', 3), join: seed });
  await waitFor(async () => assert.equal((await json(n3, '/v1/catalog/nodes')).length, 3, 'pool formed'), 15_000);
});

after(async () => {
  for (const a of [...extra, n3, n2, n1]) await a?.stop().catch(() => undefined);
});

test('an intention written at a node without a policy key, with the operator token, is forwarded, signed and applied pool-wide', async () => {
  const t0 = Date.now();
  const r = await n3.api('/v1/connect/intentions', withToken(OPERATOR, { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Action: 'allow' }) }));
  assert.equal(r.status, 200, await r.clone().text());
  const { ID } = await r.json() as { ID: string };
  // Read-your-write on the agent that took it: the writer's signed record came back with the answer.
  assert.ok((await intentionsOf(n3)).some((i) => i.ID === ID), 'written intention visible at once where it was written');
  await waitFor(async () => {
    for (const a of [n1, n2]) assert.ok((await intentionsOf(a)).some((i) => i.ID === ID), `intention reached ${a.http.port}`);
  }, 10_000);
  console.log(`# intention written at n3 applied on all 3 agents ${Date.now() - t0} ms after the request`);
  assert.deepEqual(await json(n2, '/v1/connect/intentions/check?source=web&destination=api'), { Allowed: true });
});

test('a node token cannot write pool-wide policy: 403, nothing changed anywhere', async () => {
  const before = (await intentionsOf(n1)).length;
  for (const a of [n1, n2]) {
    const r = await a.api('/v1/connect/intentions', withToken(NODE_TOKEN, { method: 'POST', body: JSON.stringify({ SourceName: '*', DestinationName: 'payments', Action: 'allow' }) }));
    assert.equal(r.status, 403, `node token on ${a === n1 ? 'the writer' : 'a node'}`);
    const c = await a.api('/v1/config', withToken(NODE_TOKEN, { method: 'PUT', body: JSON.stringify({ Kind: 'service-defaults', Name: 'payments', Protocol: 'http' }) }));
    assert.equal(c.status, 403);
  }
  await sleep(500);
  assert.equal((await intentionsOf(n1)).length, before);
  assert.equal((await intentionsOf(n2)).length, before);
  assert.equal((await json(n2, '/v1/config/service-defaults')).length, 0);
});

test('a gossip-key holder with a root of its own: its intentions, deletes and config entries are applied nowhere', async () => {
  const legit = (await intentionsOf(n2)).find((i) => i.SourceName === 'web')!;
  // A machine with only the gossip key: same encrypt, its own token, its own CA (waived), joined to the pool.
  const rogue = await startTestAgent({
    dev: false, node: 'rogue', bind: ip(9), dataDir: tempDir(), encrypt: creds.encrypt, aclToken: 'rogue-own-token', waive: ['ca_files'],
    defaultIntentionPolicy: 'deny', join: [`${ip(1)}:${n1.gossip.port}`],
  });
  extra.push(rogue);
  const rt = (init: RequestInit) => withToken('rogue-own-token', init);
  assert.equal((await rogue.api('/v1/connect/intentions', rt({ method: 'POST', body: JSON.stringify({ SourceName: '*', DestinationName: 'payments', Action: 'allow' }) }))).status, 200);
  assert.equal((await rogue.api('/v1/config', rt({ method: 'PUT', body: JSON.stringify({ Kind: 'service-defaults', Name: 'payments', Protocol: 'http' }) }))).status, 200);
  // It learns the legitimate intention (as a peer would relay it to it) and deletes it with its own signature.
  const record = n2.intentions.record(legit.ID)!;
  assert.ok(rogue.intentions.merge(JSON.parse(record.sig!.body)), 'rogue took the legit record');
  assert.equal((await rogue.api(`/v1/connect/intentions/${legit.ID}`, rt({ method: 'DELETE' }))).status, 200);
  // Everyone exchanges full state with it (push/pull), more than once.
  for (let i = 0; i < 3; i++) {
    for (const a of [n1, n2, n3]) a.gossip.pull('rogue');
    await sleep(700);
  }
  for (const a of [n1, n2, n3]) {
    const list = await intentionsOf(a);
    assert.ok(!list.some((i) => i.DestinationName === 'payments'), 'rogue allow not applied');
    assert.ok(list.some((i) => i.ID === legit.ID), 'legit intention not deleted');
    assert.equal((await json(a, '/v1/config/service-defaults')).length, 0, 'rogue service-defaults not applied');
    assert.deepEqual(await json(a, '/v1/connect/intentions/check?source=web&destination=payments'), { Allowed: false });
  }
  const metrics = await (await n2.api('/v1/agent/metrics?format=prometheus')).text();
  assert.match(metrics, /nodemesh_replication_refused_total\{set="intentions"\} [1-9]/, 'refusals counted');
  await rogue.stop();
});

/** Delivers one app gossip message to an agent as the UDP path would (records or an announcement). */
const deliver = (a: TestAgent, msg: unknown) => a.gossip.serf.app!.onMessage(Buffer.from(JSON.stringify(msg)));

test('a policy-signed record with a forged Precedence is stored with the precedence recomputed', async () => {
  const signer = new RecordSigner(createPrivateKey(creds.policy.keyPem), [creds.policy.certPem, creds.root.certPem]);
  const id = randomUUID();
  const now = new Date().toISOString();
  const rec = {
    id, hlc: { wall: Date.now(), logical: 0, node: 'n1' }, deleted: false,
    intention: { ID: id, Description: '', SourceNS: 'default', SourceName: 'mallory', DestinationNS: 'default', DestinationName: 'ledger', SourceType: 'consul', Action: 'allow', DefaultAddr: '', DefaultPort: 0, Meta: {}, Precedence: 1000, CreatedAt: now, UpdatedAt: now, Hash: 'x', CreateIndex: 1, ModifyIndex: 1 },
  };
  deliver(n2, { t: 'records', set: 'intentions', records: [signer.signBlob(JSON.stringify(rec))] });
  const got = (await intentionsOf(n2)).find((i) => i.ID === id);
  assert.ok(got, 'a correctly signed record is taken');
  assert.equal(got.Precedence, 9, 'precedence recomputed, not the sender\'s 1000');
});

test('records signed by a node\'s key (a compromised node) are refused as policy', async () => {
  const n3Signer = new RecordSigner(createPrivateKey(creds.nodes.n3.keyPem), [creds.nodes.n3.certPem, creds.root.certPem]);
  n2.gossip.serf.app!.mergeState(Buffer.from(JSON.stringify({ nodes: [], certs: [n3Signer.chain], sets: {} })));
  const id = randomUUID();
  const now = new Date().toISOString();
  const rec = { id, hlc: { wall: Date.now(), logical: 0, node: 'n3' }, deleted: false, intention: { ID: id, Description: '', SourceNS: 'default', SourceName: '*', DestinationNS: 'default', DestinationName: 'vault', SourceType: 'consul', Action: 'allow', DefaultAddr: '', DefaultPort: 0, Meta: {}, Precedence: 8, CreatedAt: now, UpdatedAt: now, Hash: 'x', CreateIndex: 1, ModifyIndex: 1 } };
  deliver(n2, { t: 'records', set: 'intentions', records: [n3Signer.signBlob(JSON.stringify(rec))] });
  assert.ok(!(await intentionsOf(n2)).some((i) => i.ID === id));
});

test('node-name takeover and version-jump wipe: another node\'s entry, or a huge version, is refused; the real node keeps replicating', async () => {
  await n2.api('/v1/agent/service/register', withToken(NODE_TOKEN, { method: 'PUT', body: JSON.stringify({ Name: 'ledger', Port: 7000 }) }));
  await waitFor(async () => assert.equal((await json(n1, '/v1/catalog/service/ledger')).length, 1, 'ledger on n1'), 10_000);
  const before = n1.catalog.snapshotNode('n2')!;
  const wipe = { ...before, version: 1e12, services: [], checks: [], info: { ...before.info, Address: ip(9) } };
  const body = JSON.stringify(wipe);
  // Signed by n3's intermediate (a compromised node), and by a foreign root (a gossip-key holder).
  const n3Signer = new RecordSigner(createPrivateKey(creds.nodes.n3.keyPem), [creds.nodes.n3.certPem, creds.root.certPem]);
  const { CertificateAuthority } = await import('../identity/ca/certificate-authority.js');
  const foreign = await CertificateAuthority.createRoot();
  const foreignSigner = new RecordSigner(createPrivateKey(foreign.keyPem), [foreign.certPem]);
  for (const s of [n3Signer, foreignSigner]) {
    n1.gossip.serf.app!.mergeState(Buffer.from(JSON.stringify({ nodes: [s.signBlob(body)], certs: [s.chain], sets: {} })));
    deliver(n1, { t: 'digest', node: 'n2', version: 1e12, ...s.seal(`nodemesh-digest\0n2\0${1e12}`) });
  }
  // Unsigned, as an older or hand-made peer would send it.
  n1.gossip.serf.app!.mergeState(Buffer.from(JSON.stringify({ nodes: [{ body, by: 'x', sig: 'y' }], sets: {} })));
  const now = n1.catalog.snapshotNode('n2')!;
  assert.equal(now.version, before.version, 'version not jumped');
  assert.equal(now.info.Address, ip(2), 'address not taken over');
  assert.equal((await json(n1, '/v1/catalog/service/ledger')).length, 1, 'services not wiped');
  // The real n2 still replicates to n1 (its announcements are not shadowed by the forged huge version).
  await n2.api('/v1/agent/service/register', withToken(NODE_TOKEN, { method: 'PUT', body: JSON.stringify({ Name: 'ledger-2', Port: 7001 }) }));
  await waitFor(async () => assert.equal((await json(n1, '/v1/catalog/service/ledger-2')).length, 1, 'n2 still replicates'), 10_000);
});

test('an impostor joining under an existing node\'s name from another address changes nothing', async () => {
  const impostor = await startTestAgent({
    dev: false, node: 'n2', bind: ip(8), dataDir: tempDir(), encrypt: creds.encrypt, aclToken: 'impostor-token', waive: ['ca_files'],
    defaultIntentionPolicy: 'allow', join: [`${ip(1)}:${n1.gossip.port}`],
  }).catch((e: Error) => e);
  if (impostor instanceof Error) {
    // Refused at join is also a refusal — but only that one: any other start failure fails the test.
    assert.equal((impostor as Error & { code?: string }).code, 'JOIN_FAILED', impostor.message);
    return;
  }
  extra.push(impostor);
  await impostor.api('/v1/agent/service/register', withToken('impostor-token', { method: 'PUT', body: JSON.stringify({ Name: 'payments', Port: 9999 }) }));
  for (let i = 0; i < 2; i++) {
    n1.gossip.serf.memberlist.pushPullWith(ip(8), impostor.gossip.port, false).catch(() => undefined);
    await sleep(700);
  }
  for (const a of [n1, n3]) {
    assert.equal(a.catalog.snapshotNode('n2')!.info.Address, ip(2));
    assert.deepEqual(await json(a, '/v1/catalog/service/payments'), []);
  }
  await impostor.stop();
});

test('case variants of one intention are one name pool-wide: a forwarded WEB → Api next to web → api is a 409', async () => {
  const r = await n2.api('/v1/connect/intentions', withToken(OPERATOR, { method: 'POST', body: JSON.stringify({ SourceName: 'WEB', DestinationName: 'Api', Action: 'deny' }) }));
  assert.equal(r.status, 409, await r.clone().text());
  assert.match(await r.text(), /duplicate intention found/);
  assert.deepEqual(await json(n3, '/v1/connect/intentions/check?source=Web&destination=API'), { Allowed: true }, 'the existing allow decides for every spelling');
});

test('a policy-signed intention with a regex the API refuses is quarantined; the agent serves on and restarts clean', async () => {
  const signer = new RecordSigner(createPrivateKey(creds.policy.keyPem), [creds.policy.certPem, creds.root.certPem]);
  const id = randomUUID();
  const now = new Date().toISOString();
  const rec = {
    id, hlc: { wall: Date.now(), logical: 0, node: 'n1' }, deleted: false,
    intention: { ID: id, Description: '', SourceNS: 'default', SourceName: 'web', DestinationNS: 'default', DestinationName: 'shop', SourceType: 'consul', Action: '', Permissions: [{ Action: 'allow', HTTP: { PathRegex: '(' } }], DefaultAddr: '', DefaultPort: 0, Meta: {}, Precedence: 9, CreatedAt: now, UpdatedAt: now, Hash: 'x', CreateIndex: 1, ModifyIndex: 1 },
  };
  deliver(n2, { t: 'records', set: 'intentions', records: [signer.signBlob(JSON.stringify(rec))] });
  assert.ok(!(await intentionsOf(n2)).some((i) => i.ID === id), 'not applied');
  assert.ok(n2.intentions.quarantined().some((q) => q.id === id), 'quarantined');
  assert.equal((await n2.api('/v1/agent/self')).status, 200, 'still serving');
  const config = { ...hardened('n2', 2), dataDir: n2.dataDir, join: [`${ip(3)}:${n3.gossip.port}`] };
  await n2.stop();
  n2 = await startTestAgent(config);
  assert.equal((await n2.api('/v1/agent/self')).status, 200, 'restarted');
  assert.ok(!(await intentionsOf(n2)).some((i) => i.ID === id), 'never persisted');
});

test('with no policy writer reachable a forwarded write fails with 503 and nothing changes', async () => {
  const count = (await intentionsOf(n3)).length;
  await n1.stop();
  const r = await n3.api('/v1/connect/intentions', withToken(OPERATOR, { method: 'POST', body: JSON.stringify({ SourceName: 'a', DestinationName: 'b', Action: 'allow' }) }));
  assert.equal(r.status, 503);
  assert.match(await r.text(), /policy writer/);
  assert.equal((await intentionsOf(n3)).length, count);
});
