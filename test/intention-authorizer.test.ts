// The authorizer's caches and the store's pair index: decisions follow every intention change; duplicates are refused, freed pairs reusable.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Authorizer, withDefault } from '../policy/authorizer.js';
import { IntentionStore } from '../policy/intention-store.js';
import { tempDir } from './helpers/agent-process.js';

const src = (service: string) => ({ service, namespace: 'default' });

test('cached decisions change with every create, update and delete, wildcard and exact', async () => {
  const store = new IntentionStore(join(tempDir(), 'intentions.json'), 'n1');
  const auth = new Authorizer(withDefault(store, 'deny'));
  assert.equal(auth.decide(src('web'), 'api').allowed, false, 'default deny');
  const star = await store.create({ SourceName: '*', DestinationName: 'api', Action: 'allow' });
  assert.equal(auth.decide(src('web'), 'api').allowed, true, 'wildcard allow seen at once');
  const exact = await store.create({ SourceName: 'web', DestinationName: 'api', Action: 'deny' });
  assert.equal(auth.decide(src('web'), 'api').allowed, false, 'exact deny wins by precedence');
  assert.equal(auth.decide(src('admin'), 'api').allowed, true);
  await store.update(exact.ID, { SourceName: 'web', DestinationName: 'api', Action: 'allow' });
  assert.equal(auth.decide(src('web'), 'api').allowed, true, 'update seen');
  await store.delete(star.ID);
  assert.equal(auth.decide(src('admin'), 'api').allowed, false, 'delete seen');
  await store.close();
});

test('a pair is unique: a duplicate create or an update onto a taken pair is refused; a deleted pair is free again', async () => {
  const store = new IntentionStore(join(tempDir(), 'intentions.json'), 'n1');
  const a = await store.create({ SourceName: 'web', DestinationName: 'api', Action: 'allow' });
  const b = await store.create({ SourceName: 'web', DestinationName: 'db', Action: 'allow' });
  await assert.rejects(store.create({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }), /duplicate intention found/);
  await assert.rejects(store.update(b.ID, { SourceName: 'web', DestinationName: 'api', Action: 'deny' }), /duplicate intention found/);
  await store.update(a.ID, { SourceName: 'web', DestinationName: 'api', Action: 'deny' }); // its own pair: fine
  await store.delete(a.ID);
  const again = await store.create({ SourceName: 'web', DestinationName: 'api', Action: 'allow' });
  assert.notEqual(again.ID, a.ID);
  // After a reload from disk the index is rebuilt: the pair is still taken.
  await store.close();
  const reloaded = new IntentionStore(store['file'].path, 'n1');
  await reloaded.load();
  await assert.rejects(reloaded.create({ SourceName: 'web', DestinationName: 'api', Action: 'deny' }), /duplicate intention found/);
  await reloaded.close();
});
