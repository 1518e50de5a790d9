// Catalog replication logic (catalog/replication.ts) without a gossip pool: signed version announcements, their epidemic relay and pulls, push/pull state merge with per-entry checks, and replicated sets riding along.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Catalog } from '../catalog/catalog-store.js';
import { CatalogReplicator, type CatalogAuthority, type ReplicatedSet, type ReplicatorIo, type Seal } from '../catalog/replication.js';
import type { NodeInfo, NodeSnapshot } from '../model/catalog-types.js';

// ---------------------------------------------------------------- the parts around the replicator

/** Per-signer keys stand in for certificates: a seal is an HMAC under the signer's key. */
const key = (signer: string) => `key-of-${signer}`;
const mac = (signer: string, body: string) => createHmac('sha256', key(signer)).update(body).digest('hex');

/**
 * An authority as the agent's: a seal counts only if it comes from the node itself (or the pool's root), and only
 * once the signer's chain has been learned ('unknown' before that).
 */
class TestAuthority implements CatalogAuthority {
  readonly known = new Set<string>();
  seals = 0;
  learned: unknown[] = [];
  constructor(readonly self: string) { this.known.add(self); }
  seal(body: string): Seal { this.seals++; return { by: this.self, sig: mac(this.self, body) }; }
  checkNode(node: string, body: string, seal: Partial<Seal> | undefined): 'ok' | 'unknown' | string {
    if (!seal?.by || !seal.sig) return 'unsigned';
    if (!this.known.has(seal.by)) return 'unknown';
    if (seal.by !== node && seal.by !== 'root') return `signed by ${seal.by}, not by ${node}`;
    return seal.sig === mac(seal.by, body) ? 'ok' : 'bad signature';
  }
  chains(): unknown[] { return [...this.known]; }
  learn(chains: unknown): void {
    this.learned.push(chains);
    if (Array.isArray(chains)) for (const c of chains) if (typeof c === 'string') this.known.add(c);
  }
}

type Msg = Record<string, unknown>;

/** The gossip side: what was broadcast (decoded), pulled, refused; who is a member. */
class TestIo implements ReplicatorIo {
  readonly sent: { msg: Msg; key?: string }[] = [];
  readonly pulls: string[] = [];
  readonly refusals: [string, string, string][] = [];
  readonly members = new Set<string>();
  broadcast(body: Buffer, k?: string): void { this.sent.push({ msg: JSON.parse(body.toString('utf8')) as Msg, key: k }); }
  pull(node: string): void { this.pulls.push(node); }
  isMember(node: string): boolean { return this.members.has(node); }
  refused(what: 'node' | 'digest', node: string, reason: string): void { this.refusals.push([what, node, reason]); }
}

/** A replicated set that keeps the first record per id (merge counts the new ones). */
class TestSet implements ReplicatedSet {
  readonly held = new Map<string, unknown>();
  local: unknown[] = [];
  readonly merges: unknown[][] = [];
  constructor(readonly name: string) {}
  exportAll(): unknown[] { return [...this.held.values()]; }
  merge(records: unknown[]): number {
    this.merges.push(records);
    let n = 0;
    for (const r of records) {
      const id = (r as { id?: unknown } | null)?.id;
      if (typeof id === 'string' && !this.held.has(id)) { this.held.set(id, r); n++; }
    }
    return n;
  }
  takeLocalChanges(): unknown[] { return this.local.splice(0); }
}

const info = (node: string): NodeInfo => ({ ID: `id-${node}`, Node: node, Address: '127.0.193.9', Datacenter: 'dc1', TaggedAddresses: {}, Meta: { role: 'test' } });

/** Adds (or changes) a service on a node, as the local agent API would: the node's version rises. */
function register(catalog: Catalog, node: string, service: string, port = 8080): void {
  catalog.mutate(node, (tx) => {
    tx.putService({ ID: service, Service: service, Tags: ['t'], Meta: {}, Port: port, Address: '127.0.193.9', Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false });
    tx.putCheck({ CheckID: `service:${service}`, Name: service, Status: 'passing', Notes: '', Output: '', ServiceID: service, ServiceName: service, ServiceTags: [], Type: 'ttl', Definition: {} });
  });
}

/** One agent: its catalog (with its own node registered), replicator and the parts around it. */
function agent(name: string, sets: ReplicatedSet[] = []) {
  const catalog = new Catalog();
  catalog.upsertNode(info(name));
  const io = new TestIo();
  const authority = new TestAuthority(name);
  const r = new CatalogReplicator(catalog, name, sets, io, authority);
  return { name, catalog, io, authority, r, sets };
}

const digestText = (node: string, version: number) => `nodemesh-digest\0${node}\0${version}`;
/** An announcement of `node`'s version, sealed by `by` (default: the node itself). */
function digest(node: string, version: number, by = node, signedVersion = version): Buffer {
  return Buffer.from(JSON.stringify({ t: 'digest', node, version, by, sig: mac(by, digestText(node, signedVersion)) }));
}
const digests = (io: TestIo) => io.sent.filter((s) => s.msg.t === 'digest');

/** A node entry as its node sealed it, for a push/pull state. */
function signedEntry(snap: unknown, by: string): { body: string; by: string; sig: string } {
  const body = JSON.stringify(snap);
  return { body, by, sig: mac(by, body) };
}
function snapshot(node: string, version: number, over: Partial<NodeSnapshot> = {}): NodeSnapshot {
  const c = new Catalog();
  c.upsertNode(info(node));
  register(c, node, `svc-${node}`);
  return { ...c.snapshotNode(node)!, version, ...over };
}
const state = (nodes: unknown[], sets: Record<string, unknown[]> = {}, certs: unknown = []) => Buffer.from(JSON.stringify({ nodes, certs, sets }));

// ---------------------------------------------------------------- announcements

test('localChanged announces our node\'s version once per version, sealed by us, keyed by node', () => {
  const a = agent('a');
  a.r.localChanged();
  a.r.localChanged();
  const v1 = a.catalog.getNode('a')!.version;
  assert.deepEqual(digests(a.io), [{ msg: { t: 'digest', node: 'a', version: v1, by: 'a', sig: mac('a', digestText('a', v1)) }, key: 'digest:a' }]);
  register(a.catalog, 'a', 'web');
  a.r.localChanged();
  assert.deepEqual(digests(a.io).map((d) => d.msg.version), [v1, v1 + 1], 'a new version is announced');
});

test('with our node not in the catalog yet, nothing is announced', () => {
  const catalog = new Catalog();
  const io = new TestIo();
  new CatalogReplicator(catalog, 'a', [], io, new TestAuthority('a')).localChanged();
  assert.deepEqual(io.sent, []);
});

test('local set changes go out one record per message, keyed by set and id so a newer one replaces a queued older one', () => {
  const intentions = new TestSet('intentions');
  const a = agent('a', [intentions, new TestSet('config-entries')]);
  intentions.local = [{ id: 'i1', v: 1 }, { id: 'i2', v: 1 }, { noId: true }];
  a.r.localChanged();
  const recs = a.io.sent.filter((s) => s.msg.t === 'records');
  assert.deepEqual(recs, [
    { msg: { t: 'records', set: 'intentions', records: [{ id: 'i1', v: 1 }] }, key: 'intentions:i1' },
    { msg: { t: 'records', set: 'intentions', records: [{ id: 'i2', v: 1 }] }, key: 'intentions:i2' },
    { msg: { t: 'records', set: 'intentions', records: [{ noId: true }] }, key: undefined },
  ]);
  a.r.localChanged();
  assert.equal(a.io.sent.filter((s) => s.msg.t === 'records').length, 3, 'each change goes once');
});

test('a peer\'s signed announcement of a newer version prompts a pull and is passed on once', () => {
  const b = agent('b');
  b.authority.known.add('a');
  b.r.onMessage(digest('a', 3));
  assert.deepEqual(b.io.pulls, ['a']);
  assert.deepEqual(digests(b.io), [{ msg: { t: 'digest', node: 'a', version: 3, by: 'a', sig: mac('a', digestText('a', 3)) }, key: 'digest:a' }], 'relayed as signed');
  b.r.onMessage(digest('a', 3));
  b.r.onMessage(digest('a', 2));
  assert.deepEqual(b.io.pulls, ['a'], 'the same or an older version again: nothing');
  assert.equal(digests(b.io).length, 1);
  b.r.onMessage(digest('a', 4));
  assert.deepEqual(b.io.pulls, ['a', 'a']);
  assert.equal(digests(b.io).length, 2);
});

test('an announcement of a version we already hold is passed on without a pull', () => {
  const b = agent('b');
  b.authority.known.add('a');
  b.catalog.applyRemote(snapshot('a', 7));
  b.r.onMessage(digest('a', 7));
  assert.deepEqual(b.io.pulls, []);
  assert.equal(digests(b.io).length, 1);
});

test('announcements about ourselves, or with a bad node or version, are ignored', () => {
  const b = agent('b');
  for (const body of [
    digest('b', 99),
    Buffer.from(JSON.stringify({ t: 'digest', node: 'a', version: -1, by: 'a', sig: 'x' })),
    Buffer.from(JSON.stringify({ t: 'digest', node: 'a', version: 1.5, by: 'a', sig: 'x' })),
    Buffer.from(JSON.stringify({ t: 'digest', node: 'a', version: '3', by: 'a', sig: 'x' })),
    Buffer.from(JSON.stringify({ t: 'digest', node: 'a', version: 2 ** 60, by: 'a', sig: 'x' })),
    Buffer.from(JSON.stringify({ t: 'digest', node: 42, version: 1, by: 'a', sig: 'x' })),
    Buffer.from(JSON.stringify({ t: 'something-else' })),
  ]) b.r.onMessage(body);
  assert.deepEqual([b.io.sent, b.io.pulls, b.io.refusals], [[], [], []]);
});

test('an announcement sealed by someone else, or for another version, is refused and not passed on', () => {
  const b = agent('b');
  b.authority.known.add('mallory');
  b.r.onMessage(digest('a', 5, 'mallory')); // mallory speaks for a
  b.authority.known.add('a');
  b.r.onMessage(digest('a', 6, 'a', 5)); // a's seal of version 5, claiming 6
  b.r.onMessage(Buffer.from(JSON.stringify({ t: 'digest', node: 'a', version: 8 }))); // no seal at all
  assert.deepEqual(b.io.refusals, [['digest', 'a', 'signed by mallory, not by a'], ['digest', 'a', 'bad signature'], ['digest', 'a', 'unsigned']]);
  assert.deepEqual([digests(b.io), b.io.pulls], [[], []]);
  b.r.onMessage(digest('a', 5));
  assert.deepEqual(b.io.pulls, ['a'], 'a refused announcement is not remembered: the genuine one still counts');
});

test('an announcement from a signer not learned yet only prompts a pull: it is neither remembered nor passed on', () => {
  const b = agent('b');
  b.r.onMessage(digest('a', 3));
  b.r.onMessage(digest('a', 3));
  assert.deepEqual(b.io.pulls, ['a', 'a'], 'each one prompts a pull (its entry comes back with the chain)');
  assert.deepEqual(digests(b.io), []);
  assert.deepEqual(b.io.refusals, []);
  b.catalog.applyRemote(snapshot('a', 3));
  b.r.onMessage(digest('a', 3));
  assert.deepEqual(b.io.pulls, ['a', 'a'], 'not when we already hold that version');
});

// ---------------------------------------------------------------- records messages

test('a records message is merged into its set and passed on only if it changed something', () => {
  const intentions = new TestSet('intentions');
  const b = agent('b', [intentions]);
  const msg = Buffer.from(JSON.stringify({ t: 'records', set: 'intentions', records: [{ id: 'i1' }] }));
  b.r.onMessage(msg);
  assert.deepEqual([...intentions.held.keys()], ['i1']);
  assert.deepEqual(b.io.sent, [{ msg: { t: 'records', set: 'intentions', records: [{ id: 'i1' }] }, key: 'intentions:i1' }]);
  b.r.onMessage(msg);
  assert.equal(b.io.sent.length, 1, 'nothing new: not passed on again');
  assert.equal(intentions.merges.length, 2);
});

test('records for an unknown set, or not a list, are ignored', () => {
  const intentions = new TestSet('intentions');
  const b = agent('b', [intentions]);
  b.r.onMessage(Buffer.from(JSON.stringify({ t: 'records', set: 'secrets', records: [{ id: 'x' }] })));
  b.r.onMessage(Buffer.from(JSON.stringify({ t: 'records', set: 'intentions', records: { id: 'x' } })));
  b.r.onMessage(Buffer.from(JSON.stringify({ t: 'records', set: 'intentions' })));
  assert.deepEqual(intentions.merges, []);
  assert.deepEqual(b.io.sent, []);
});

test('a message that is not JSON, or not an object, throws (the gossip layer drops it) and changes nothing', () => {
  const b = agent('b', [new TestSet('intentions')]);
  assert.throws(() => b.r.onMessage(Buffer.from('\x00\xffnot json')), SyntaxError);
  assert.throws(() => b.r.onMessage(Buffer.from('null')), TypeError);
  b.r.onMessage(Buffer.from('[]'));
  b.r.onMessage(Buffer.from('"digest"'));
  assert.deepEqual([b.io.sent, b.io.pulls, b.io.refusals], [[], [], []]);
});

// ---------------------------------------------------------------- push/pull state

test('push/pull: a peer takes our node entry as we sealed it, and learns our signer chain', () => {
  const a = agent('a');
  register(a.catalog, 'a', 'api', 9000);
  const b = agent('b');
  b.io.members.add('a');
  b.r.mergeState(a.r.localState());
  assert.deepEqual(b.authority.learned, [['a']]);
  const got = b.catalog.getNode('a');
  assert.ok(got, 'node a is in b\'s catalog');
  assert.equal(got.version, a.catalog.getNode('a')!.version, 'with the version its owner gave it');
  assert.equal(got.services.get('api')?.Port, 9000);
  assert.deepEqual(b.io.refusals, []);
});

test('push/pull relays other nodes\' entries as their nodes sealed them, so a third agent can check them', () => {
  const a = agent('a');
  register(a.catalog, 'a', 'api');
  const b = agent('b');
  b.io.members.add('a');
  b.r.mergeState(a.r.localState());
  const c = agent('c');
  c.io.members.add('a');
  c.io.members.add('b');
  const relayed = JSON.parse(b.r.localState().toString()) as { nodes: { body: string; by: string }[] };
  assert.deepEqual(relayed.nodes.map((n) => n.by).sort(), ['a', 'b'], 'a\'s entry still carries a\'s seal');
  c.r.mergeState(b.r.localState());
  assert.ok(c.catalog.getNode('a'), 'c has a (relayed by b)');
  assert.ok(c.catalog.getNode('b'), 'c has b');
  assert.deepEqual(c.io.refusals, []);
});

test('our own entry is sealed once per version, however often the state is asked for', () => {
  const a = agent('a');
  a.r.localState();
  a.r.localState();
  assert.equal(a.authority.seals, 1);
  register(a.catalog, 'a', 'x');
  a.r.localState();
  assert.equal(a.authority.seals, 2);
});

test('mergeState never takes an entry for ourselves, for a non-member, or one not newer than ours', () => {
  const b = agent('b');
  b.authority.known.add('a').add('z');
  b.io.members.add('a');
  b.catalog.applyRemote(snapshot('a', 5));
  const ownVersion = b.catalog.getNode('b')!.version;
  b.r.mergeState(state([
    signedEntry(snapshot('b', 999), 'b'), // our own node: only this agent writes it
    signedEntry(snapshot('z', 1), 'z'), // not a member (left, or reaped)
    signedEntry(snapshot('a', 5, { services: [] }), 'a'), // same version as ours
    signedEntry(snapshot('a', 4, { services: [] }), 'a'), // older
  ]));
  assert.equal(b.catalog.getNode('b')!.version, ownVersion);
  assert.equal(b.catalog.getNode('z'), undefined);
  assert.equal(b.catalog.getNode('a')!.services.size, 1, 'a\'s entry unchanged');
  assert.deepEqual(b.io.refusals, [], 'none of these is a refusal');
});

test('mergeState refuses entries with a wrong or unknown seal, and still takes the good ones', () => {
  const b = agent('b');
  for (const n of ['a', 'c', 'd', 'e']) b.io.members.add(n);
  b.authority.known.add('a').add('c').add('mallory');
  const forged = signedEntry(snapshot('c', 2), 'c');
  forged.body = JSON.stringify(snapshot('c', 3)); // changed after sealing
  b.r.mergeState(state([
    signedEntry(snapshot('a', 2), 'mallory'),
    forged,
    signedEntry(snapshot('d', 2), 'd'), // d's chain never learned
    { body: JSON.stringify(snapshot('e', 2)) }, // no seal
    signedEntry(snapshot('c', 2), 'c'),
  ]));
  assert.deepEqual(b.io.refusals, [
    ['node', 'a', 'signed by mallory, not by a'],
    ['node', 'c', 'bad signature'],
    ['node', 'd', 'signer unknown'],
    ['node', 'e', 'unsigned'],
  ]);
  assert.equal(b.catalog.getNode('a'), undefined);
  assert.equal(b.catalog.getNode('d'), undefined);
  assert.equal(b.catalog.getNode('c')?.version, 2, 'the genuine entry after the bad ones is taken');
});

test('malformed node entries are refused with the reason (and the node they name, if any); the rest of the state is still merged', () => {
  const b = agent('b');
  b.io.members.add('ok');
  b.authority.known.add('x').add('ok');
  const good = snapshot('ok', 1);
  const bad = (over: Record<string, unknown>) => signedEntry({ ...snapshot('x', 1), ...over }, 'x');
  const svc = good.services[0];
  const chk = good.checks[0];
  b.r.mergeState(state([
    null,
    'a string',
    { body: 42 },
    { body: '{not json' },
    signedEntry(null, 'x'),
    bad({ info: { ...info('x'), Node: 'bad name!' } }),
    bad({ info: { ...info('x'), Address: 7 } }),
    bad({ info: { ...info('x'), Meta: { n: 1 } } }),
    bad({ version: -1 }),
    bad({ version: 1.5 }),
    bad({ services: {} }),
    bad({ services: [{ ...svc, Port: '80' }] }),
    bad({ services: [{ ...svc, Tags: [1] }] }),
    bad({ services: [{ ...svc, Proxy: { Upstreams: [] } }] }),
    bad({ checks: [{ ...chk, Node: 'x', Status: 'fine' }] }),
    bad({ checks: [{ ...chk, Node: 'someone-else' }] }),
    signedEntry(good, 'ok'),
  ]));
  assert.deepEqual(b.io.refusals.map(([, node, reason]) => `${node}: ${reason}`), [
    '?: malformed entry', '?: malformed entry', '?: malformed entry', '?: unparsable entry', '?: no node info',
    'bad name!: bad node name', 'x: bad node info', 'x: bad node info', 'x: bad version', 'x: bad version',
    'x: services and checks must be lists', 'x: bad service', 'x: bad service', 'x: bad proxy', 'x: bad check', 'x: bad check',
  ]);
  assert.equal(b.catalog.getNode('x'), undefined);
  assert.ok(b.catalog.getNode('ok'), 'the good entry after them is taken');
});

test('a node that left the catalog is no longer relayed', () => {
  const a = agent('a');
  const b = agent('b');
  b.io.members.add('a');
  b.r.mergeState(a.r.localState());
  const bodies = () => (JSON.parse(b.r.localState().toString()) as { nodes: { by: string }[] }).nodes.map((n) => n.by).sort();
  assert.deepEqual(bodies(), ['a', 'b']);
  b.catalog.removeNode('a');
  assert.deepEqual(bodies(), ['b']);
});

test('push/pull carries every replicated set whole, and each set merges its own records', () => {
  const aSets = [new TestSet('intentions'), new TestSet('config-entries')];
  aSets[0].merge([{ id: 'i1' }, { id: 'i2' }]);
  aSets[1].merge([{ id: 'service-defaults/api' }]);
  const a = agent('a', aSets);
  const bSets = [new TestSet('intentions'), new TestSet('config-entries')];
  const b = agent('b', bSets);
  b.r.mergeState(a.r.localState());
  assert.deepEqual([...bSets[0].held.keys()], ['i1', 'i2']);
  assert.deepEqual([...bSets[1].held.keys()], ['service-defaults/api']);
  const c = agent('c', [new TestSet('intentions')]);
  c.r.mergeState(state([], { intentions: 'not a list' as unknown as unknown[], other: [{ id: 'x' }] }));
  assert.deepEqual((c.sets[0] as TestSet).merges, [], 'a set whose records are not a list is skipped');
});

test('a push/pull state that is not JSON throws (the gossip layer drops it) before anything is merged', () => {
  const b = agent('b', [new TestSet('intentions')]);
  assert.throws(() => b.r.mergeState(Buffer.from('{"nodes": [')), SyntaxError);
  assert.deepEqual(b.authority.learned, []);
});
