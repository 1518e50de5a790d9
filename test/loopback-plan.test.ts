// The loopback address plan: every test, chaos, soak and bench file owns its own 127.0.N.0/24 block, so files running
// side by side (--test-concurrency=2) never bind the same address and port; tests use N 1–199, benchmarks 200–254.
// 127.0.0.0/24 is shared and only ever used with port 0 or a port the OS picked.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((n) => {
    const rel = `${dir}/${n}`;
    if (statSync(join(ROOT, rel)).isDirectory()) return n === 'corpus' ? [] : files(rel);
    return /\.(ts|mjs)$/.test(n) ? [rel] : [];
  });
}

/** Block → the files that write an address in it (127.0.N.x literals and 127.0.N.${…} templates). */
function blocks(): Map<number, Set<string>> {
  const owners = new Map<number, Set<string>>();
  for (const f of [...files('test'), ...files('bench')]) {
    for (const m of readFileSync(join(ROOT, f), 'utf8').matchAll(/\b127\.0\.(\d{1,3})\.(?:\d|\$\{)/g)) {
      const n = Number(m[1]);
      if (n === 0) continue;
      if (!owners.has(n)) owners.set(n, new Set());
      owners.get(n)!.add(f);
    }
  }
  return owners;
}

test('every 127.0.N.0/24 block (N > 0) belongs to one file; tests use 1–199 and benchmarks 200–254', () => {
  const owners = blocks();
  assert.ok(owners.size > 20, `the plan covers the suite (${owners.size} blocks in use)`);
  const shared = [...owners].filter(([, f]) => f.size > 1).map(([n, f]) => `127.0.${n}.0/24: ${[...f].join(', ')}`);
  assert.deepEqual(shared, [], `blocks used by more than one file:\n${shared.join('\n')}`);
  for (const [n, f] of owners) {
    const file = [...f][0];
    if (file.startsWith('bench/')) assert.ok(n >= 200, `${file} uses 127.0.${n}.x: benchmarks take blocks 200–254`);
    else assert.ok(n < 200, `${file} uses 127.0.${n}.x: tests take blocks 1–199`);
  }
  const free = Array.from({ length: 199 }, (_, i) => i + 1).find((n) => !owners.has(n));
  console.log(`# ${owners.size} blocks in use; the next free test block is 127.0.${free}.0/24`);
});
