// `npm run bench`: direct connection vs. through nodemesh (upstream → mTLS → public listener), side by side, as ratios.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/free-port.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const QUICK = process.argv.includes('--quick');
const DURATION = QUICK ? 3 : 8;
const RUNS = QUICK ? 1 : 3;
const BULK_BYTES = (QUICK ? 256 : 1024) * 1024 * 1024;
const children: ChildProcess[] = [];

const log = (m: string) => process.stderr.write(`${m}\n`);
const cleanup = () => { for (const c of children) c.kill('SIGTERM'); };
process.on('exit', cleanup);
process.on('SIGINT', () => { cleanup(); process.exit(130); });
const hardStop = setTimeout(() => { log('bench: over its 9-minute budget, stopping'); cleanup(); process.exit(1); }, 9 * 60_000);
hardStop.unref();

function ensureWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (e) {
    if ((e as { status?: number }).status === 1) return; // wrk --version exits 1 after printing
    log('bench: installing wrk with apt-get…');
    execFileSync('sh', ['-c', 'apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1)']);
  }
}

function startChild(args: string[], ready: RegExp): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`child did not start: ${out}`)), 20_000);
    const look = (c: Buffer) => {
      out += c;
      const m = ready.exec(out);
      if (m) { clearTimeout(t); resolve({ proc, match: m }); }
    };
    proc.stdout!.on('data', look);
    proc.stderr!.on('data', look);
    proc.on('exit', (code) => reject(new Error(`child exited ${code}: ${out}`)));
  });
}


interface WrkResult { rps: number; p50: number; p99: number }

function wrk(url: string, conns: number, close = false): WrkResult {
  const args = ['-t', String(Math.min(2, conns)), '-c', String(conns), '-d', `${DURATION}s`, '--latency', ...(close ? ['-H', 'Connection: close'] : []), url];
  const out = execFileSync('wrk', args, { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const ms = (label: string) => {
    const m = new RegExp(`^\\s+${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    if (!m) return NaN;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  return { rps, p50: ms('50'), p99: ms('99') };
}

/** One connection, BULK_BYTES written as fast as the path takes them; Gbit/s until the sink's count comes back. */
function bulk(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(256 * 1024, 7);
    const started = process.hrtime.bigint();
    const s = connect({ host, port, allowHalfOpen: true });
    let reply = '';
    s.on('data', (c) => { reply += c; });
    s.on('end', () => {
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      if (Number(reply.trim()) !== BULK_BYTES) reject(new Error(`sink counted ${reply.trim()} of ${BULK_BYTES} bytes`));
      else resolve((BULK_BYTES * 8) / secs / 1e9);
    });
    s.on('error', reject);
    s.once('connect', async () => {
      for (let sent = 0; sent < BULK_BYTES; sent += chunk.length) {
        if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
      }
      s.end();
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  ensureWrk();
  if (!existsSync(join(ROOT, 'dist', 'agent', 'cli', 'main.js'))) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  log('bench: starting backend and agent…');
  const backend = await startChild(['--import', 'tsx', 'bench/backend-server.ts', '127.0.0.3'], /\{"http":(\d+),"sink":(\d+)\}/);
  const httpPort = Number(backend.match[1]);
  const sinkPort = Number(backend.match[2]);
  const agent = await startChild(['bin/nodemesh.js', 'agent', '--dev', '--http-port', '0', '--serf-lan-port', '0', '--log-json', '--log-level', 'info', '--data-dir', mkdtempSync(join(tmpdir(), 'nodemesh-bench-'))], /"http":"127\.0\.0\.1:(\d+)"/);
  const api = `http://127.0.0.1:${agent.match[1]}`;
  const upHttp = await freePort('127.0.0.1');
  const upSink = await freePort('127.0.0.1');
  const reg = async (b: unknown) => {
    const r = await fetch(`${api}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify(b) });
    if (!r.ok) throw new Error(await r.text());
  };
  await reg({ Name: 'backend', Address: '127.0.0.3', Port: httpPort, Connect: { SidecarService: {} } });
  await reg({ Name: 'sink', Address: '127.0.0.3', Port: sinkPort, Connect: { SidecarService: {} } });
  await reg({ Name: 'client', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [
    { DestinationName: 'backend', LocalBindPort: upHttp }, { DestinationName: 'sink', LocalBindPort: upSink },
  ] } } } });
  for (let i = 0; i < 100; i++) {
    const ok = await Promise.all(['backend', 'sink'].map(async (n) => ((await (await fetch(`${api}/v1/health/connect/${n}?passing`)).json()) as unknown[]).length === 1));
    if (ok.every(Boolean)) break;
    await new Promise((r) => setTimeout(r, 100));
  }

  const paths = { direct: { http: `http://127.0.0.3:${httpPort}/`, sink: sinkPort, host: '127.0.0.3' }, nodemesh: { http: `http://127.0.0.1:${upHttp}/`, sink: upSink, host: '127.0.0.1' } };
  const rows: { name: string; unit: string; higherBetter: boolean; get: (p: typeof paths.direct) => Promise<number> | number }[] = [];
  for (const c of QUICK ? [32] : [1, 32, 256]) {
    const cache = new Map<string, WrkResult>();
    const run = (p: typeof paths.direct) => {
      const r = wrk(p.http, c);
      cache.set(p.http, r);
      return r;
    };
    rows.push({ name: `keep-alive req/s, ${c} conn`, unit: 'req/s', higherBetter: true, get: (p) => run(p).rps });
    rows.push({ name: `  p50 latency, ${c} conn`, unit: 'ms', higherBetter: false, get: (p) => cache.get(p.http)!.p50 });
    rows.push({ name: `  p99 latency, ${c} conn`, unit: 'ms', higherBetter: false, get: (p) => cache.get(p.http)!.p99 });
  }
  rows.push({ name: 'new connections/s (Connection: close), 32 conn', unit: 'conn/s', higherBetter: true, get: (p) => wrk(p.http, 32, true).rps });
  rows.push({ name: 'bulk throughput, 1 connection', unit: 'Gbit/s', higherBetter: true, get: (p) => bulk(p.host, p.sink) });

  const results: Record<string, { direct: number[]; nodemesh: number[] }> = {};
  for (let run = 0; run < RUNS; run++) {
    for (const row of rows) {
      results[row.name] ??= { direct: [], nodemesh: [] };
      // Alternate which path goes first, so warm-up and drift do not favour one.
      const order = run % 2 === 0 ? (['direct', 'nodemesh'] as const) : (['nodemesh', 'direct'] as const);
      for (const which of order) {
        results[row.name][which].push(await row.get(paths[which]));
      }
      log(`bench: run ${run + 1}/${RUNS}: ${row.name.trim()} done`);
    }
  }
  const fmt = (n: number) => (Number.isNaN(n) ? 'n/a' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
  const table = [['metric', 'unit', 'direct', 'nodemesh', 'nodemesh/direct']];
  for (const row of rows) {
    const d = median(results[row.name].direct);
    const n = median(results[row.name].nodemesh);
    table.push([row.name, row.unit, fmt(d), fmt(n), `${(n / d).toFixed(2)}x`]);
  }
  const w = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const lines = table.map((r) => r.map((c, i) => (i >= 2 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  '));
  lines.splice(1, 0, w.map((x) => '-'.repeat(x)).join('  '));
  process.stdout.write(`\nnodemesh L4 benchmark — ${new Date().toISOString()} — ${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}\n` +
    `median of ${RUNS} alternating run(s), ${DURATION}s each; wrk on loopback; backend is one Node process for both paths;\n` +
    'nodemesh path: client → upstream listener → mTLS (TLS 1.3, P-256) → public listener → backend, both ends in one agent.\n\n' +
    `${lines.join('\n')}\n`);
  cleanup();
}

main().catch((e) => { log(`bench failed: ${(e as Error).stack}`); cleanup(); process.exit(1); });
