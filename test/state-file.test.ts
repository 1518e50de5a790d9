// Durable state files: atomic replace, private mode, group commit of concurrent saves, clear error on a corrupt file.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { StateFile } from '../lib/state-file.js';
import { tempDir } from './helpers/agent-process.js';

test('save writes the latest snapshot atomically with mode 0600 and leaves no temp file', async () => {
  const dir = tempDir();
  let value = { n: 1 };
  const f = new StateFile(join(dir, 's.json'), () => value);
  assert.equal(await f.load(), undefined);
  await f.save();
  value = { n: 2 };
  await f.save();
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')), { n: 2 });
  assert.equal(statSync(join(dir, 's.json')).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['s.json']);
  assert.deepEqual(await f.load(), { n: 2 });
});

test('concurrent saves share writes, and each resolves only after a snapshot that includes its change', async () => {
  const dir = tempDir();
  let counter = 0;
  let snapshots = 0;
  const f = new StateFile(join(dir, 's.json'), () => { snapshots++; return { counter }; });
  const saves: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) {
    counter++;
    const mine = counter;
    saves.push(f.save().then(() => {
      const onDisk = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as { counter: number };
      assert.ok(onDisk.counter >= mine, `save ${mine} resolved before its change was on disk (${onDisk.counter})`);
    }));
  }
  await Promise.all(saves);
  assert.ok(snapshots <= 3, `expected group commit, got ${snapshots} writes for 50 saves`);
});

test('a corrupt file is reported with what to do, not silently replaced', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 's.json'), '{"half":');
  const f = new StateFile(join(dir, 's.json'), () => ({}));
  await assert.rejects(f.load(), { code: 'STATE_CORRUPT', message: /not valid JSON.*move it away/ });
});
