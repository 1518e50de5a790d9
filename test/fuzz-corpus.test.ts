// Fuzz findings stay fixed: every saved case in test/fuzz/corpus/ is replayed, and a short seeded run of each surface
// (the full one is `npm run fuzz`) must only ever fail with the surface's own error types.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Rng } from './fuzz/mutate.js';
import { inputFor } from './fuzz/run-fuzz.js';
import { SURFACES } from './fuzz/surfaces.js';

const CORPUS = join(fileURLToPath(new URL('.', import.meta.url)), 'fuzz', 'corpus');

for (const s of SURFACES) {
  test(`fuzz surface ${s.name}: saved findings and 2 000 seeded cases fail only with its own errors`, () => {
    const dir = join(CORPUS, s.name);
    const saved = existsSync(dir) ? readdirSync(dir).map((f) => {
      const data = readFileSync(join(dir, f));
      return f.endsWith('.txt') ? data.toString('utf8') : data;
    }) : [];
    const rng = new Rng(20261125);
    const cases = [...saved, ...Array.from({ length: 2000 }, () => inputFor(s, rng))];
    for (const input of cases) {
      try {
        s.run(input);
      } catch (e) {
        assert.ok(s.allowed(e), `${s.name}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message} for ${JSON.stringify(String(input).slice(0, 200))}`);
      }
    }
  });
}
