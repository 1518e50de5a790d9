// `npm run fuzz`: every surface fed mutated and random input (100 k cases each by default); a crash, a wrong error type or a
// case slower than 1 s is a finding, saved to test/fuzz/corpus/ and replayed by `npm test` from then on.

import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng, mutateBytes, mutateJson } from './mutate.js';
import { SURFACES, type Surface } from './surfaces.js';
import { fuzzTlsFront } from './tls-front.js';
import { fuzzDnsFront } from './dns-front.js';

const CORPUS = join(dirname(fileURLToPath(import.meta.url)), 'corpus');
const flag = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const CASES = Number(flag('--cases') ?? 100_000);
const SEED = Number(flag('--seed') ?? (Date.now() & 0x7fffffff));
const ONLY = flag('--only');
const SLOW_MS = 1000;
const MAX_FINDINGS = 20;

/** One input for a surface from the seeded generator. */
export function inputFor(s: Surface, rng: Rng): Buffer | string {
  if (s.generate) return s.generate(rng);
  if (s.kind === 'bytes') return mutateBytes(rng, s.seeds as Buffer[]);
  if (s.kind === 'json') return mutateJson(rng, s.seeds);
  return mutateBytes(rng, (s.seeds as string[]).map((x) => Buffer.from(x))).toString('utf8');
}

interface Finding { surface: string; input: Buffer | string; why: string }

function save(f: Finding): string {
  const dir = join(CORPUS, f.surface);
  mkdirSync(dir, { recursive: true });
  const data = typeof f.input === 'string' ? Buffer.from(f.input, 'utf8') : f.input;
  const file = join(dir, `${createHash('sha1').update(data).digest('hex').slice(0, 16)}.${typeof f.input === 'string' ? 'txt' : 'bin'}`);
  writeFileSync(file, data);
  return file;
}

const heapMb = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

async function main(): Promise<void> {
  let unhandled = 0;
  process.on('unhandledRejection', () => { unhandled++; });
  const rows = [['surface', 'cases', 'findings', 'slowest ms', 'cases/s', 'heap Δ MB']];
  let findings = 0;
  process.stderr.write(`fuzz: seed ${SEED}, ${CASES} cases per surface${ONLY ? `, only ${ONLY}` : ''}\n`);
  for (const s of SURFACES) {
    if (ONLY && !s.name.includes(ONLY)) continue;
    const rng = new Rng(SEED ^ createHash('sha1').update(s.name).digest().readUInt32BE(0));
    const heap0 = heapMb();
    const t0 = Date.now();
    let slowest = 0;
    let found = 0;
    let lastReport = t0;
    for (let i = 0; i < CASES; i++) {
      const input = inputFor(s, rng);
      const c0 = performance.now();
      try {
        s.run(input);
      } catch (e) {
        if (!s.allowed(e)) {
          found++;
          if (found <= MAX_FINDINGS) {
            const file = save({ surface: s.name, input, why: String(e) });
            process.stderr.write(`fuzz: ${s.name}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message?.slice(0, 160)} → ${file}\n`);
          }
        }
      }
      const took = performance.now() - c0;
      if (took > slowest) slowest = took;
      if (took > SLOW_MS && found < MAX_FINDINGS) {
        found++;
        process.stderr.write(`fuzz: ${s.name}: one case took ${took.toFixed(0)} ms → ${save({ surface: s.name, input, why: 'slow' })}\n`);
      }
      if (Date.now() - lastReport > 2000) {
        lastReport = Date.now();
        process.stderr.write(`fuzz: ${s.name}: ${i + 1}/${CASES}\r`);
      }
    }
    const secs = (Date.now() - t0) / 1000;
    rows.push([s.name, String(CASES), String(found), slowest.toFixed(1), (CASES / Math.max(secs, 0.001)).toFixed(0), (heapMb() - heap0).toFixed(1)]);
    findings += found;
  }
  // The TLS front of a live listener: each case is one hostile connection.
  if (!ONLY || 'tls-front'.includes(ONLY)) {
    const n = CASES;
    process.stderr.write(`fuzz: tls-front: ${n} hostile connections against a live agent…\n`);
    const r = await fuzzTlsFront(n, SEED, heapMb);
    for (const f of r.findings) process.stderr.write(`fuzz: tls-front: ${f}\n`);
    rows.push(['tls-front', String(n), String(r.findings.length), '-', r.perSecond.toFixed(0), r.heapDeltaMb.toFixed(1)]);
    findings += r.findings.length;
  }
  // The DNS interface of a live agent: at least 100 k packets, whatever --cases says (UDP cases are cheap).
  if (!ONLY || 'dns-front'.includes(ONLY)) {
    const n = Math.max(CASES, 100_000);
    process.stderr.write(`fuzz: dns-front: ${n} hostile packets against a live agent's DNS…\n`);
    const r = await fuzzDnsFront(n, SEED, heapMb);
    for (const f of r.findings) process.stderr.write(`fuzz: dns-front: ${f}\n`);
    rows.push(['dns-front', String(n), String(r.findings.length), '-', r.perSecond.toFixed(0), r.heapDeltaMb.toFixed(1)]);
    findings += r.findings.length;
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => (i ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  '));
  lines.splice(1, 0, w.map((x) => '-'.repeat(x)).join('  '));
  process.stdout.write(`\nfuzz — seed ${SEED}, Node ${process.version}\n${lines.join('\n')}\nunhandled rejections: ${unhandled}\n`);
  if (findings || unhandled) {
    process.stdout.write(`fuzz: ${findings} finding(s) saved under test/fuzz/corpus/ (npm test replays them)\n`);
    process.exit(1);
  }
}

// Run only as the script, not when a test imports inputFor.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => { process.stderr.write(`fuzz failed: ${(e as Error).stack}\n`); process.exit(1); });
}
