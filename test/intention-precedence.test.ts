// Intention precedence, validation and matching, row by row against Consul 1.8's table and texts.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { decide, matchIntentions } from '../policy/decision.js';
import { IntentionStore } from '../policy/intention-store.js';
import { precedence } from '../model/intention.js';
import { tempDir } from './helpers/agent-process.js';

// Consul 1.8.7, every row created and read back (consul-reference.md §3).
const TABLE: [string, string, string, string, number][] = [
  ['default', 'web', 'default', 'db', 9],
  ['default', '*', 'default', 'db', 8],
  ['*', '*', 'default', 'db', 7],
  ['default', 'web', 'default', '*', 6],
  ['default', '*', 'default', '*', 5],
  ['*', '*', 'default', '*', 4],
  ['default', 'web', '*', '*', 3],
  ['default', '*', '*', '*', 2],
  ['*', '*', '*', '*', 1],
];

for (const [sns, sn, dns, dn, want] of TABLE) {
  test(`precedence ${sns}/${sn} => ${dns}/${dn} is ${want}`, async () => {
    assert.equal(precedence({ SourceNS: sns, SourceName: sn, DestinationNS: dns, DestinationName: dn }), want);
    const store = new IntentionStore(join(tempDir(), 'i.json'), 'n1');
    const i = await store.create({ SourceNS: sns, SourceName: sn, DestinationNS: dns, DestinationName: dn, Action: 'allow' });
    assert.equal(i.Precedence, want);
  });
}

test('the list is ordered by precedence, then names; the first match decides', async () => {
  const store = new IntentionStore(join(tempDir(), 'i.json'), 'n1');
  for (const [sns, sn, dns, dn] of [...TABLE].reverse()) {
    await store.create({ SourceNS: sns, SourceName: sn, DestinationNS: dns, DestinationName: dn, Action: sn === 'web' && dn === 'db' ? 'deny' : 'allow' });
  }
  assert.deepEqual(store.list().map((i) => i.Precedence), [9, 8, 7, 6, 5, 4, 3, 2, 1]);
  let d = decide(store.list(), 'web', 'db', 'allow');
  assert.equal(d.allowed, false);
  assert.match(d.reason, /^Matched intention: DENY default\/web => default\/db \(ID: [0-9a-f-]{36}, Precedence: 9\)$/);
  d = decide(store.list(), 'api', 'db', 'deny');
  assert.equal(d.allowed, true);
  assert.equal(d.intention?.Precedence, 8);
  assert.deepEqual(matchIntentions(store.list(), 'destination', 'db').map((i) => i.Precedence), [9, 8, 7, 6, 5, 4, 3, 2, 1]);
  assert.deepEqual(matchIntentions(store.list(), 'destination', 'cache').map((i) => i.Precedence), [6, 5, 4, 3, 2, 1]);
  assert.deepEqual(matchIntentions(store.list(), 'source', 'api').map((i) => i.Precedence), [8, 7, 5, 4, 2, 1]);
});

test('no intention: the default policy decides, and says so', () => {
  assert.deepEqual(decide([], 'a', 'b', 'deny'), { allowed: false, reason: 'Default behavior configured by default_intention_policy (deny)' });
  assert.equal(decide([], 'a', 'b', 'allow').allowed, true);
});

test('validation gives Consul\'s texts as 400s, and nothing is stored', async () => {
  const store = new IntentionStore(join(tempDir(), 'i.json'), 'n1');
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ SourceName: 'web', DestinationName: 'db', Action: 'ALLOW' }, /\* Action must be set to 'allow' or 'deny'/],
    [{ DestinationName: 'db', Action: 'allow' }, /\* SourceName must be set/],
    [{ SourceName: 'we*', DestinationName: 'db', Action: 'allow' }, /\* SourceName: wildcard character '\*' cannot be used with partial values/],
    [{ SourceNS: '*', SourceName: 'web', DestinationName: 'db', Action: 'allow' }, /\* SourceName: exact value cannot follow wildcard namespace/],
    [{ SourceName: 'web', DestinationName: 'db', Action: 'allow', SourceType: 'bogus' }, /\* SourceType must be set to 'consul'/],
    [{ SourceName: 'web', DestinationName: 'db', Action: 'allow', Description: 'x'.repeat(513) }, /Description exceeds maximum length 512/],
  ];
  for (const [input, msg] of bad) {
    await assert.rejects(store.create(input), (e: { status: number; message: string }) => e.status === 400 && msg.test(e.message) && /^\d errors? occurred:\n/.test(e.message));
  }
  await assert.rejects(store.create({ ID: 'x', SourceName: 'a', DestinationName: 'b', Action: 'allow' }), { status: 400, message: 'ID must be empty when creating a new intention' });
  assert.deepEqual(store.list(), []);
  const i = await store.create({ SourceName: 'web', DestinationName: 'db', Action: 'allow' });
  await assert.rejects(store.create({ SourceName: 'web', DestinationName: 'db', Action: 'deny' }),
    { status: 409, message: `duplicate intention found: ALLOW default/web => default/db (ID: ${i.ID}, Precedence: 9)` });
});

test('update replaces the whole intention; delete leaves a tombstone; both survive a reload', async () => {
  const path = join(tempDir(), 'i.json');
  const store = new IntentionStore(path, 'n1');
  const i = await store.create({ SourceName: 'web', DestinationName: 'db', Action: 'allow', Description: 'first', Meta: { a: 'b' } });
  const u = await store.update(i.ID, { SourceName: 'web', DestinationName: 'db', Action: 'deny' });
  assert.equal(u.Description, '');
  assert.deepEqual(u.Meta, {});
  assert.equal(u.CreatedAt, i.CreatedAt);
  assert.ok(u.ModifyIndex > i.ModifyIndex);
  const other = await store.create({ SourceName: 'api', DestinationName: 'db', Action: 'allow' });
  await store.delete(other.ID);
  await assert.rejects(store.delete(other.ID), { status: 404, message: `Cannot delete non-existent intention: '${other.ID}'` });
  await assert.rejects(store.update(other.ID, { SourceName: 'a', DestinationName: 'b', Action: 'allow' }), { status: 404 });
  assert.throws(() => store.get('nope'), { status: 400, message: 'Bad request: failed intention lookup: index error: UUID must be 36 characters' });
  assert.throws(() => store.get(other.ID), { status: 404, message: 'Intention not found' });

  const reloaded = new IntentionStore(path, 'n1');
  await reloaded.load();
  assert.deepEqual(reloaded.list(), [u]);
  const tomb = reloaded.allRecords().find((r) => r.id === other.ID);
  assert.equal(tomb?.deleted, true);
});

test('merge is last-writer-wins by hybrid logical clock', async () => {
  const a = new IntentionStore(join(tempDir(), 'a.json'), 'a');
  const b = new IntentionStore(join(tempDir(), 'b.json'), 'b');
  const i = await a.create({ SourceName: 'web', DestinationName: 'db', Action: 'allow' });
  for (const r of a.allRecords()) assert.equal(b.merge(r), true);
  await b.update(i.ID, { SourceName: 'web', DestinationName: 'db', Action: 'deny' });
  const newer = b.allRecords()[0];
  assert.equal(a.merge(newer), true);
  assert.equal(a.get(i.ID).Action, 'deny');
  // An older write arriving late changes nothing.
  assert.equal(b.merge({ ...newer, hlc: { wall: 0, logical: 0, node: 'z' } }), false);
  assert.equal(b.get(i.ID).Action, 'deny');
});
