// `npm run soak -- --minutes 30`: two agents (real processes) under steady load through the mesh while services
// register and deregister and an intention flips every second; every interval it prints each agent's RSS, heap, open
// file descriptors and event-loop delay, and the load's p99; it fails if any of them grows without bound or p99 drifts
// past 2× its first interval. Loopback only (127.0.79.x); bounded by --minutes; stops by itself.

import { randomBytes } from 'node:crypto';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, launchAgent } from '../helpers/agent-launcher.js';
import { freePort } from '../helpers/free-port.js';

const flag = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const MINUTES = Number(flag('--minutes') ?? 30);
const INTERVAL_S = Number(flag('--interval') ?? 60);
const CLIENTS = 16;
const children: ChildProcess[] = [];
const log = (m: string) => process.stderr.write(`${m}\n`);
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

async function startAgent(args: string[]): Promise<{ proc: ChildProcess; api: string; gossip: number }> {
  const a = await launchAgent(['--http-port', '0', ...args], { keepBytes: 20_000 });
  children.push(a.proc);
  return { proc: a.proc, api: a.url, gossip: Number(a.gossip?.split(':').pop()) };
}

async function call(api: string, method: string, path: string, body?: unknown): Promise<void> {
  const r = await fetch(`${api}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  await r.arrayBuffer();
}

/** One agent's process figures from its own metrics. */
async function sample(api: string): Promise<{ rssMb: number; heapMb: number; fds: number; lagMs: number }> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const num = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    rssMb: num('process_resident_memory_bytes') / 2 ** 20,
    heapMb: num('nodejs_heap_size_used_bytes') / 2 ** 20,
    fds: num('process_open_fds'),
    lagMs: num('nodejs_eventloop_lag_p99_seconds') * 1000,
  };
}

const p99 = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] ?? NaN; };

async function main(): Promise<void> {
  const deadline = Date.now() + MINUTES * 60_000;
  const hard = setTimeout(() => { log('soak: over its time budget, stopping'); process.exit(1); }, MINUTES * 60_000 + 120_000);
  hard.unref();
  const caDir = mkdtempSync(join(tmpdir(), 'nodemesh-soak-ca-'));
  execFileSync(process.execPath, [CLI, 'ca', 'init', '--out', caDir], { stdio: 'ignore' });
  const config = join(caDir, 'agent.json');
  // Gossip encrypted as in production; the soak's own API calls go without a token (waived by name).
  writeFileSync(config, JSON.stringify({ default_intention_policy: 'allow', ca_file: join(caDir, 'ca.pem'), ca_key_file: join(caDir, 'ca-key.pem'), log_level: 'info', encrypt: randomBytes(32).toString('base64'), waive: ['acl_token'] }));
  const dataDir = () => mkdtempSync(join(tmpdir(), 'nodemesh-soak-'));
  const b = await startAgent(['--node', 'soak-b', '--bind', '127.0.79.2', '--serf-lan-port', '0', '--data-dir', dataDir(), '--config-file', config]);
  const a = await startAgent(['--node', 'soak-a', '--bind', '127.0.79.1', '--serf-lan-port', '0', '--data-dir', dataDir(), '--config-file', config, '--join', `127.0.79.2:${b.gossip}`]);
  const backend = createServer((_q, r) => r.end('soak ok\n'));
  await new Promise<void>((r) => backend.listen(0, '127.0.79.11', r));
  await call(b.api, 'PUT', '/v1/agent/service/register', { Name: 'backend', Address: '127.0.79.11', Port: (backend.address() as { port: number }).port, Connect: { SidecarService: {} } });
  const up = await freePort('127.0.79.21');
  await call(a.api, 'PUT', '/v1/agent/service/register', { Name: 'caller', Address: '127.0.79.21', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'backend', LocalBindAddress: '127.0.79.21', LocalBindPort: up }] } } } });
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  const get = () => new Promise<number>((resolve) => {
    const t0 = performance.now();
    const r = request({ host: '127.0.79.21', port: up, path: '/', agent }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - t0 : -1)); });
    r.on('error', () => resolve(-1));
    r.setTimeout(5000, () => r.destroy());
    r.end();
  });
  for (let i = 0; i < 300 && (await get()) < 0; i++) await new Promise((r) => setTimeout(r, 100));
  log(`soak: ${MINUTES} min, ${CLIENTS} clients through the mesh, a service registered/deregistered and an intention flipped every second`);

  let latencies: number[] = [];
  let failed = 0;
  let total = 0;
  const load = Array.from({ length: CLIENTS }, async () => {
    while (Date.now() < deadline) {
      const ms = await get();
      total++;
      if (ms < 0) failed++;
      else latencies.push(ms);
    }
  });
  let tick = 0;
  const churn = setInterval(() => {
    tick++;
    const id = `churn-${tick % 50}`;
    void call(b.api, 'PUT', tick % 2 ? '/v1/agent/service/register' : `/v1/agent/service/deregister/churn-${(tick - 1) % 50}`, tick % 2 ? { Name: 'churn', ID: id, Address: '127.0.79.31', Port: 1000 + (tick % 50) } : undefined).catch(() => undefined);
    // An intention on a pair the load does not use flips allow/deny.
    void fetch(`${a.api}/v1/connect/intentions`).then((r) => r.json()).then(async (list: { ID: string; SourceName: string }[]) => {
      const mine = list.find((i) => i.SourceName === 'flipper');
      if (mine) await call(a.api, 'PUT', `/v1/connect/intentions/${mine.ID}`, { SourceName: 'flipper', DestinationName: 'backend', Action: tick % 2 ? 'deny' : 'allow' });
      else await call(a.api, 'POST', '/v1/connect/intentions', { SourceName: 'flipper', DestinationName: 'backend', Action: 'deny' });
    }).catch(() => undefined);
  }, 1000);

  const rows: { minute: number; p99: number; req: number; fail: number; a: Awaited<ReturnType<typeof sample>>; b: Awaited<ReturnType<typeof sample>> }[] = [];
  const header = 'interval  req/s   fail  p99 ms  | A rss MB  heap MB  fds  lag ms | B rss MB  heap MB  fds  lag ms';
  process.stdout.write(`${header}\n${'-'.repeat(header.length)}\n`);
  for (let n = 1; Date.now() < deadline; n++) {
    await new Promise((r) => setTimeout(r, Math.min(INTERVAL_S * 1000, Math.max(0, deadline - Date.now()))));
    const [sa, sb] = [await sample(a.api), await sample(b.api)];
    const row = { minute: n, p99: p99(latencies), req: total / INTERVAL_S, fail: failed, a: sa, b: sb };
    rows.push(row);
    latencies = [];
    total = 0;
    failed = 0;
    const f = (x: number, d = 1) => x.toFixed(d).padStart(7);
    process.stdout.write(`${String(n).padStart(8)}  ${f(row.req, 0)}  ${String(row.fail).padStart(4)}  ${f(row.p99, 2)}  | ${f(sa.rssMb)}  ${f(sa.heapMb)}  ${String(sa.fds).padStart(3)}  ${f(sa.lagMs, 2)} | ${f(sb.rssMb)}  ${f(sb.heapMb)}  ${String(sb.fds).padStart(3)}  ${f(sb.lagMs, 2)}\n`);
  }
  clearInterval(churn);
  await Promise.all(load);
  agent.destroy();
  for (const c of children) c.kill('SIGTERM');
  backend.close();

  // Verdict, after the first interval (warm-up): no figure may grow in every interval and end over 1.5× its start;
  // p99 may not pass 2× the first interval's.
  const problems: string[] = [];
  const steady = rows.slice(1);
  if (steady.length >= 3) {
    for (const who of ['a', 'b'] as const) {
      for (const k of ['rssMb', 'heapMb', 'fds'] as const) {
        const xs = steady.map((r) => r[who][k]);
        const growing = xs.every((x, i) => i === 0 || x > xs[i - 1]);
        if (growing && xs[xs.length - 1] > xs[0] * 1.5) problems.push(`agent ${who.toUpperCase()} ${k} grew every interval: ${xs.map((x) => x.toFixed(1)).join(' → ')}`);
      }
    }
  }
  const base = rows[0]?.p99;
  for (const r of rows.slice(1)) if (r.p99 > 2 * base) problems.push(`interval ${r.minute}: p99 ${r.p99.toFixed(2)} ms is over 2× the first interval's ${base.toFixed(2)} ms`);
  const fails = rows.reduce((n, r) => n + r.fail, 0);
  if (fails) problems.push(`${fails} request(s) failed through the mesh`);
  process.stdout.write(problems.length ? `\nsoak: FAILED\n${problems.map((p) => `  - ${p}`).join('\n')}\n` : '\nsoak: passed — no figure grew without bound, p99 within 2× of the first interval, no failed request\n');
  process.exit(problems.length ? 1 : 0);
}

main().catch((e) => { log(`soak failed: ${(e as Error).stack}`); process.exit(1); });
