// Replicated intention and config-entry records are admitted only as the API would take them: hostile records from a
// peer or the state file are quarantined (never applied or persisted) and nothing a peer sends can crash an agent.
// Agents: B (`api`, protocol http) 127.0.83.2, A (caller `web`) 127.0.83.1; api's app 127.0.83.11, web 127.0.83.21.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigEntryStore, type ConfigEntryRecord } from '../policy/config-entry-store.js';
import { decideRequest } from '../policy/decision.js';
import type { Intention } from '../model/intention.js';
import { intentionHash, precedence, validateIntention, withDefaults } from '../model/intention.js';
import { IntentionStore, type IntentionRecord } from '../policy/intention-store.js';
import { put, sharedCa, startTestAgent, tempDir, type TestAgent } from './helpers/agent-process.js';
import { freePort } from './helpers/free-port.js';
import { waitFor } from './helpers/wait-for.js';

type Json = Record<string, any>;
let wall = 0;
/** A clock value newer than every one handed out (or written) before: a record is looked at only if it is newer. */
const nextHlc = (node = 'peer-x') => ({ wall: (wall = Math.max(wall + 1, Date.now())), logical: 0, node });

/** A valid intention record as an agent's API write makes it (from a writer store's own records). */
async function goodIntentionRecord(input: Json = { SourceName: 'web', DestinationName: 'api', Action: 'allow' }): Promise<Json> {
  const writer = new IntentionStore(join(tempDir(), 'intentions.json'), 'writer');
  const created = await writer.create(input);
  const rec = writer.allRecords().find((r) => r.id === created.ID)!;
  await writer.close();
  return JSON.parse(JSON.stringify(rec)) as Json;
}

/** `rec` with a fresh clock and its intention changed by `edit`. */
function hostile(rec: Json, edit: (i: Json, r: Json) => void): Json {
  const r = structuredClone(rec);
  r.hlc = nextHlc();
  edit(r.intention, r);
  return r;
}

async function intentionStore(): Promise<{ store: IntentionStore; refused: string[][] }> {
  const store = new IntentionStore(join(tempDir(), 'intentions.json'), 'receiver');
  await store.load();
  const refused: string[][] = [];
  store.onRefused = (set, id, reason, from) => { refused.push([set, id, reason, from]); };
  return { store, refused };
}

const MB = 'a'.repeat(1 << 20);

describe('intention records from a peer', () => {
  test('a forged Precedence is never trusted: the record is stored with the precedence and hash computed here', async () => {
    const { store } = await intentionStore();
    // The attack: a wildcard deny claiming Precedence 1000 would outrank the exact allow web → api (precedence 9).
    const deny = hostile(await goodIntentionRecord({ SourceName: '*', DestinationName: 'api', Action: 'deny' }), (i) => { i.Precedence = 1000; i.Hash = 'forged'; });
    const allow = await goodIntentionRecord();
    assert.equal(store.merge(deny), true);
    assert.equal(store.merge(allow), true);
    const stored = store.get(deny.id);
    assert.equal(stored.Precedence, 8);
    assert.equal(stored.Precedence, precedence(stored));
    const { Hash: _h, CreatedAt: _c, UpdatedAt: _u, CreateIndex: _ci, ModifyIndex: _mi, ...fields } = stored;
    assert.equal(stored.Hash, intentionHash(fields));
    assert.deepEqual(store.list().map((i) => i.SourceName), ['web', '*'], 'the exact allow still ranks first');
    assert.deepEqual(store.quarantined(), []);
  });

  test('PathRegex "(" (the API answers 400) is quarantined, not stored, and reported once per id and reason', async () => {
    const { store, refused } = await intentionStore();
    const l7 = await goodIntentionRecord({ SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/ok' } }] });
    assert.equal(store.merge(l7), true);
    const bad = hostile(l7, (i) => { i.Permissions = [{ Action: 'allow', HTTP: { PathRegex: '(' } }]; });
    assert.equal(store.merge(bad), false);
    assert.equal(store.merge(hostile(bad, () => undefined)), false, 'sent again with a newer clock');
    assert.deepEqual(store.get(l7.id).Permissions, [{ Action: 'allow', HTTP: { PathPrefix: '/ok' } }], 'the good version stays');
    const q = store.quarantined();
    assert.equal(q.length, 1);
    assert.equal(q[0].id, l7.id);
    assert.equal(q[0].from, 'peer-x');
    assert.equal(q[0].phase, 'merge');
    assert.equal(q[0].count, 2);
    assert.match(q[0].reason, /PathRegex: invalid regular expression/);
    assert.equal(refused.length, 1, 'logged once per id and reason');
    assert.deepEqual(refused[0].slice(0, 2), ['intentions', l7.id]);
    // A request under the stored intention is decided as usual.
    assert.equal(decideRequest(store.get(l7.id), { method: 'GET', path: '/ok', query: new URLSearchParams(), headers: {} }, 'deny').allowed, true);
  });

  test('wrong types, extra keys, 1 MB strings, bad names, mismatched or non-UUID ids: each one quarantined, none stored', async () => {
    const { store } = await intentionStore();
    const base = await goodIntentionRecord();
    const l7 = await goodIntentionRecord({ SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/ok', Header: [{ Name: 'x', Exact: 'y' }] } }] });
    const cases: [string, Json, RegExp][] = [
      ['SourceName a number', hostile(base, (i) => { i.SourceName = 7; }), /SourceName: number is not of type string/],
      ['DefaultPort a string', hostile(base, (i) => { i.DefaultPort = '80'; }), /DefaultPort/],
      ['Meta value a number', hostile(base, (i) => { i.Meta = { a: 1 }; }), /Meta/],
      ['Permissions a string', hostile(l7, (i) => { i.Permissions = 'allow'; }), /Permissions/],
      ['Precedence a string', hostile(base, (i) => { i.Precedence = '9'; }), /Precedence/],
      ['Precedence beyond an integer', hostile(base, (i) => { i.Precedence = 1e300; }), /Precedence/],
      ['CreatedAt a number', hostile(base, (i) => { i.CreatedAt = 5; }), /CreatedAt/],
      ['CreatedAt 1 MB', hostile(base, (i) => { i.CreatedAt = MB; }), /CreatedAt/],
      ['Action neither allow nor deny', hostile(base, (i) => { i.Action = 'maybe'; }), /Action must be set to 'allow' or 'deny'/],
      ['Action with Permissions', hostile(l7, (i) => { i.Action = 'allow'; }), /Action must be empty when Permissions are present/],
      ['permission Action missing', hostile(l7, (i) => { i.Permissions = [{ HTTP: { PathPrefix: '/' } }]; }), /Permissions\[0\]\.Action/],
      ['an invalid method', hostile(l7, (i) => { i.Permissions = [{ Action: 'allow', HTTP: { Methods: ['GRAB'] } }]; }), /invalid method "GRAB"/],
      ['a header regex "("', hostile(l7, (i) => { i.Permissions[0].HTTP.Header = [{ Name: 'x', Regex: '(' }]; }), /Header\[0\] Regex: invalid regular expression/],
      ['an extra top-level key', hostile(base, (i) => { i.Evil = true; }), /unknown field "Evil"/],
      ['an extra key in a permission', hostile(l7, (i) => { i.Permissions[0].Extra = 1; }), /unknown field "Extra"/],
      ['QueryParam (the API has none)', hostile(l7, (i) => { i.Permissions[0].HTTP.QueryParam = [{ Name: 'q', Regex: '(' }]; }), /unknown field "QueryParam"/],
      ['a __proto__ key', hostile(base, (i) => { Object.defineProperty(i, '__proto__', { value: { polluted: true }, enumerable: true }); }), /unknown field "__proto__"/],
      ['1 MB SourceName', hostile(base, (i) => { i.SourceName = MB; }), /SourceName: must be at most 256 characters/],
      ['1 MB Description', hostile(base, (i) => { i.Description = MB; }), /Description exceeds maximum length 512/],
      ['1 MB Meta value', hostile(base, (i) => { i.Meta = { k: MB }; }), /Meta value for key "k" exceeds maximum length 512/],
      ['1 MB PathExact (over the API body limit)', hostile(l7, (i) => { i.Permissions[0].HTTP.PathPrefix = `/${MB}`; }), /over the 1048576-byte limit/],
      ['a slash in a name', hostile(base, (i) => { i.DestinationName = 'a/b'; }), /DestinationName/],
      ['a NUL in a name', hostile(base, (i) => { i.SourceName = 'web\u0000'; }), /SourceName/],
      ['a newline in a name', hostile(base, (i) => { i.SourceName = 'web\n'; }), /SourceName/],
      ['a partial wildcard', hostile(base, (i) => { i.SourceName = 'we*'; }), /wildcard character '\*' cannot be used with partial values/],
      ['SourceType not consul', hostile(base, (i) => { i.SourceType = 'kubernetes'; }), /SourceType must be set to 'consul'/],
      ['ID not the record id', hostile(base, (i) => { i.ID = randomUUID(); }), /is not the record's id/],
      ['a non-UUID id', hostile(base, (i, r) => { r.id = 'not-a-uuid'; i.ID = 'not-a-uuid'; }), /is not a UUID/],
      ['a live record without its intention', hostile(base, (_i, r) => { delete r.intention; }), /carries no intention/],
      ['hlc wall not an integer', hostile(base, (_i, r) => { r.hlc.wall += 0.5; }), /hlc/],
      ['not an object at all', 'intention' as unknown as Json, /malformed record/],
    ];
    for (const [what, rec, reason] of cases) {
      assert.equal(store.merge(rec), false, `${what}: refused`);
      const q = store.quarantined().at(-1)!;
      assert.match(q.reason, reason, `${what}: ${q.reason}`);
    }
    assert.equal(store.allRecords().length, 0, 'nothing stored');
    assert.equal(({} as Json).polluted, undefined);
  });

  test('tombstones carry no value and need a UUID id; a record\'s sig is kept as it came', async () => {
    const { store } = await intentionStore();
    const rec = await goodIntentionRecord();
    const sig = { body: '{"signed":"elsewhere"}', by: 'fingerprint', sig: 'c2ln' };
    assert.equal(store.merge({ ...hostile(rec, () => undefined), sig }), true);
    assert.deepEqual(store.allRecords()[0].sig, sig);
    const tomb = { id: rec.id, hlc: nextHlc(), deleted: true, intention: { junk: MB }, sig };
    assert.equal(store.merge(tomb), true);
    const stored = store.allRecords()[0] as IntentionRecord;
    assert.equal(stored.deleted, true);
    assert.equal(stored.intention, undefined, 'a tombstone stores no value');
    assert.deepEqual(stored.sig, sig);
    assert.equal(store.merge({ id: '../../etc/passwd', hlc: nextHlc(), deleted: true }), false);
    assert.match(store.quarantined().at(-1)!.reason, /is not a UUID/);
  });

  test('the quarantine is bounded (oldest dropped) and a failing reporter does not stop merges', async () => {
    const { store } = await intentionStore();
    const base = await goodIntentionRecord();
    store.onRefused = () => { throw new Error('reporter down'); };
    for (let n = 0; n < 300; n++) assert.equal(store.merge(hostile(base, (i, r) => { r.id = randomUUID(); i.ID = r.id; i.Precedence = 'x'; })), false);
    assert.equal(store.quarantined().length, 256);
    assert.equal(store.merge(await goodIntentionRecord()), true);
  });

  test('a hostile record written straight into the state file is dropped at load (reported, the file rewritten); the others load', async () => {
    const dir = tempDir();
    const path = join(dir, 'intentions.json');
    const first = new IntentionStore(path, 'n1');
    const keep = await first.create({ SourceName: 'web', DestinationName: 'api', Action: 'allow' });
    await first.close();
    const file = JSON.parse(readFileSync(path, 'utf8')) as { records: Json[] };
    const good = file.records[0];
    const regexId = randomUUID();
    file.records.push(
      hostile(good, (i, r) => { r.id = regexId; i.ID = regexId; i.SourceName = 'db'; i.Action = ''; i.Permissions = [{ Action: 'allow', HTTP: { PathRegex: '(' } }]; }),
      hostile(good, (i, r) => { r.id = 'service-defaults/web'; i.ID = r.id; }),
      { garbage: true },
    );
    const forgedId = randomUUID();
    file.records.push(hostile(good, (i, r) => { r.id = forgedId; i.ID = forgedId; i.SourceName = '*'; i.Precedence = 1000; }));
    writeFileSync(path, JSON.stringify(file));
    const store = new IntentionStore(path, 'n1');
    await store.load();
    assert.deepEqual(store.allRecords().map((r) => r.id).sort(), [keep.ID, forgedId].sort());
    assert.equal(store.get(forgedId).Precedence, 8, 'recomputed at load too');
    const q = store.quarantined();
    assert.equal(q.length, 3);
    assert.ok(q.every((x) => x.phase === 'load'));
    assert.ok(q.some((x) => x.id === regexId && /invalid regular expression/.test(x.reason)));
    // Reported when the agent wires its handler after load.
    const told: string[] = [];
    store.onRefused = (_set, id) => { told.push(id); };
    assert.equal(told.length, 3);
    await store.close();
    const onDisk = (JSON.parse(readFileSync(path, 'utf8')) as { records: Json[] }).records.map((r) => r.id);
    assert.deepEqual(onDisk.sort(), [keep.ID, forgedId].sort(), 'the refused records are not persisted');
  });

  test('an intention whose permissions cannot be compiled (not from this store) denies the request instead of throwing', () => {
    const i = { ID: randomUUID(), Description: '', SourceNS: 'default', SourceName: 'web', DestinationNS: 'default', DestinationName: 'api', SourceType: 'consul', Action: '', Permissions: [{ Action: 'allow', HTTP: { PathRegex: '(' } }], DefaultAddr: '', DefaultPort: 0, Meta: {}, Precedence: 9, CreatedAt: '', UpdatedAt: '', Hash: '', CreateIndex: 0, ModifyIndex: 0 } as Intention;
    const v = decideRequest(i, { method: 'GET', path: '/', query: new URLSearchParams(), headers: {} }, 'allow');
    assert.equal(v.allowed, false);
    assert.match(v.error!, /cannot be compiled/);
    const weird = { ...i, Permissions: 'x' } as unknown as Intention;
    assert.equal(decideRequest(weird, { method: 'GET', path: '/', query: new URLSearchParams(), headers: {} }, 'allow').allowed, false);
  });
});

describe('config entry records from a peer', () => {
  async function entryStore(): Promise<ConfigEntryStore> {
    const s = new ConfigEntryStore(join(tempDir(), 'config-entries.json'), 'receiver');
    await s.load();
    return s;
  }
  const rec = (id: string, entry: Json | undefined, extra: Json = {}): Json => ({ id, hlc: nextHlc(), deleted: false, ...(entry ? { entry } : {}), ...extra });

  test('a router arriving before its service-defaults is admitted (only its own validity counts)', async () => {
    const s = await entryStore();
    const router = { Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { PathPrefix: '/a' } }, Destination: { Service: 'b' } }], CreateIndex: 4, ModifyIndex: 9 };
    assert.equal(s.merge(rec('service-router/web', router)), true);
    assert.deepEqual(s.get('service-router', 'web')?.Routes, router.Routes);
    assert.equal(s.get('service-router', 'web')?.CreateIndex, 4);
    assert.equal(s.merge(rec('service-defaults/web', { Kind: 'service-defaults', Name: 'web', Protocol: 'http', CreateIndex: 1, ModifyIndex: 1 })), true);
    assert.deepEqual(s.quarantined(), []);
  });

  test('entries the API refuses, kind/name mismatches and junk are quarantined, none stored', async () => {
    const s = await entryStore();
    const cases: [string, Json, RegExp][] = [
      ['kind/name mismatch', rec('service-defaults/web', { Kind: 'service-defaults', Name: 'api' }), /is not the record's id/],
      ['kind mismatch', rec('service-defaults/web', { Kind: 'service-resolver', Name: 'web' }), /is not the record's id/],
      ['an unknown kind', rec('mesh/web', { Kind: 'mesh', Name: 'web' }), /kind\/name/],
      ['a name with a slash', rec('service-defaults/a/b', { Kind: 'service-defaults', Name: 'a/b' }), /kind\/name/],
      ['a name with a NUL', rec('service-defaults/a\u0000', { Kind: 'service-defaults', Name: 'a\u0000' }), /kind\/name/],
      ['an unsupported protocol', rec('service-defaults/web', { Kind: 'service-defaults', Name: 'web', Protocol: 'carrier-pigeon' }), /Protocol "carrier-pigeon" is not supported/],
      ['an extra key', rec('service-defaults/web', { Kind: 'service-defaults', Name: 'web', Junk: 1 }), /unknown field "Junk"/],
      ['a wrong type', rec('service-defaults/web', { Kind: 'service-defaults', Name: 'web', Protocol: 7 }), /cannot unmarshal number/],
      ['splits not adding up', rec('service-splitter/web', { Kind: 'service-splitter', Name: 'web', Splits: [{ Weight: 50 }] }), /sum of all split weights must be 100/],
      ['a route regex "("', rec('service-router/web', { Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { PathRegex: '(' } } }] }), /invalid regular expression/],
      ['a query regex "("', rec('service-router/web', { Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { QueryParam: [{ Name: 'q', Regex: '(' }] } } }] }), /QueryParam\[0\] Regex: invalid regular expression/],
      ['a subset filter that cannot compile', rec('service-resolver/web', { Kind: 'service-resolver', Name: 'web', Subsets: { v1: { Filter: '(x' } } }), /invalid filter/],
      ['proxy-defaults not global', rec('proxy-defaults/other', { Kind: 'proxy-defaults', Name: 'other' }), /kind\/name/],
      ['a bad CreateIndex', rec('service-defaults/web', { Kind: 'service-defaults', Name: 'web', CreateIndex: -1 }), /CreateIndex/],
      ['1 MB of Meta', rec('service-defaults/web', { Kind: 'service-defaults', Name: 'web', Meta: { k: MB } }), /over the 1048576-byte limit/],
      ['no entry', rec('service-defaults/web', undefined), /carries no entry/],
      ['an entry that is an array', rec('service-defaults/web', [] as unknown as Json), /carries no entry/],
    ];
    for (const [what, r, reason] of cases) {
      assert.equal(s.merge(r), false, `${what}: refused`);
      assert.match(s.quarantined().at(-1)!.reason, reason, what);
    }
    assert.equal(s.allRecords().length, 0);
    // A tombstone needs a kind/name id; its value, if any, is dropped.
    assert.equal(s.merge({ id: 'nope', hlc: nextHlc(), deleted: true }), false);
    assert.equal(s.merge({ id: 'service-defaults/web', hlc: nextHlc(), deleted: true, entry: { junk: true } }), true);
    assert.equal((s.allRecords()[0] as ConfigEntryRecord).entry, undefined);
  });
});

describe('two real agents: a hostile L7 intention never crashes the receiver, before or after a restart', () => {
  let a: TestAgent;
  let b: TestAgent;
  let app: Server;
  let upstream = 0;
  after(async () => {
    await a?.stop().catch(() => undefined);
    await b?.stop().catch(() => undefined);
    app?.close();
  });

  const call = (path: string) => new Promise<number>((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: upstream, method: 'GET', path }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    r.on('error', reject);
    r.end();
  });

  test('refused on merge, dropped at load; B keeps answering its API and deciding requests', async () => {
    const ca = { ...await sharedCa(), defaultIntentionPolicy: 'deny' as const };
    const bGossip = await freePort('127.0.83.2');
    b = await startTestAgent({ node: 'rrv-b', bind: '127.0.83.2', serfLanPort: bGossip, ...ca });
    a = await startTestAgent({ node: 'rrv-a', bind: '127.0.83.1', join: [`127.0.83.2:${bGossip}`], ...ca });
    app = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(200).end('ok')); });
    await new Promise<void>((r) => app.listen(0, '127.0.83.11', r));
    await b.api('/v1/agent/service/register', put({ Name: 'api', Address: '127.0.83.11', Port: (app.address() as { port: number }).port, Connect: { SidecarService: {} } }));
    assert.equal((await a.api('/v1/config', put({ Kind: 'service-defaults', Name: 'api', Protocol: 'http' }))).status, 200);
    await waitFor(async () => assert.equal((await b.api('/v1/config/service-defaults/api')).status, 200), 15_000);
    upstream = await freePort('127.0.0.1');
    await a.api('/v1/agent/service/register', put({ Name: 'web', Address: '127.0.83.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: upstream }] } } } }));
    const created = await a.api('/v1/connect/intentions', { method: 'POST', body: JSON.stringify({ SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/ok' } }] }) });
    assert.equal(created.status, 200, await created.clone().text());
    const { ID } = await created.json() as { ID: string };
    await waitFor(async () => assert.equal(await call('/ok'), 200), 20_000);

    // The attack: B hears a newer version of that intention whose PathRegex the API would refuse.
    const good = b.intentions.allRecords().find((r) => r.id === ID)!;
    const bad = JSON.parse(JSON.stringify(good)) as Json;
    bad.hlc = { wall: good.hlc.wall + 1, logical: 0, node: 'rrv-a' };
    bad.intention.Permissions = [{ Action: 'allow', HTTP: { PathRegex: '(' } }];
    bad.intention.Precedence = 1000;
    assert.equal(b.intentions.merge(bad), false);
    assert.ok(b.intentions.quarantined().some((q) => q.id === ID && /invalid regular expression/.test(q.reason)));
    assert.equal(await call('/ok'), 200, 'requests are still decided by the good version');
    assert.equal(await call('/admin'), 403);
    assert.equal((await b.api('/v1/agent/self')).status, 200, 'B is alive');
    assert.equal(b.intentions.get(ID).Permissions![0].HTTP!.PathPrefix, '/ok');

    // As an older version may have persisted it: the hostile record straight in B's file, then B restarted on it.
    const dataDir = b.dataDir;
    await b.stop();
    const path = join(dataDir, 'intentions.json');
    const file = JSON.parse(readFileSync(path, 'utf8')) as { records: Json[] };
    file.records = file.records.map((r) => (r.id === ID ? bad : r));
    writeFileSync(path, JSON.stringify(file));
    b = await startTestAgent({ node: 'rrv-b', bind: '127.0.83.2', serfLanPort: bGossip, dataDir, join: [`127.0.83.1:${a.gossip.port}`], ...ca });
    assert.equal((await b.api('/v1/agent/self')).status, 200, 'B starts and answers');
    assert.ok(b.intentions.quarantined().some((q) => q.id === ID && q.phase === 'load'));
    assert.ok(!JSON.stringify(b.intentions.allRecords()).includes('"PathRegex":"("'), 'the hostile record is not there');
    // The good version comes back from A by replication, and requests through B are decided by it.
    await waitFor(async () => assert.equal(b.intentions.get(ID).Permissions![0].HTTP!.PathPrefix, '/ok'), 20_000);
    await waitFor(async () => assert.equal(await call('/ok'), 200), 20_000);
    assert.equal(await call('/admin'), 403);
    assert.equal((await b.api('/v1/agent/self')).status, 200);
    assert.ok(!readFileSync(path, 'utf8').includes('"PathRegex":"("'), 'not persisted again');
  });
});

// The admitted intentions of the tests above satisfy the API's own validation.
test('every admitted intention passes validateIntention', async () => {
  const { store } = await intentionStore();
  store.merge(await goodIntentionRecord({ SourceName: 'web', DestinationName: 'api', Permissions: [{ Action: 'deny', HTTP: { PathExact: '/x', Header: [{ Name: 'h', Regex: 'a+' }] } }] }));
  for (const i of store.list()) assert.deepEqual(validateIntention(withDefaults(i)), []);
});
