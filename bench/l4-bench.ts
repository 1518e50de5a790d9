// `npm run bench`: direct vs. Consul 1.8.7's built-in proxy vs. an HAProxy mTLS pair vs. nodemesh, same nginx backend,
// side by side, as ratios.
//
// Topology, each on its own loopback addresses: wrk → [client-side proxy] → mTLS → [server-side proxy] → nginx.
// Consul: its dev agent and `consul connect proxy` processes (bench/consul-anchor.ts). nodemesh: two agents, a
// "client node" and a "server node" joined by gossip, as two nodes of a mesh would be. HAProxy: two processes, one
// thread each, mTLS between them (bench/haproxy-anchor.ts). Direct: wrk → nginx.

import { randomBytes } from 'node:crypto';
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startConsulPath } from './consul-anchor.js';
import { HAPROXY, startHaproxyPath } from './haproxy-anchor.js';
import { startNginx } from './nginx-backend.js';
import { freePort } from '../test/helpers/free-port.js';
import { launchAgent } from '../test/helpers/agent-launcher.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const QUICK = process.argv.includes('--quick');
const UPDATE_DOCS = process.argv.includes('--update-docs') && !process.argv.includes('--only');
const DURATION = QUICK ? 3 : 5;
const flag = (name: string) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : undefined; };
const RUNS = Number(flag('--runs') ?? (QUICK ? 1 : 3));
/** `--only bulk`: just the rows whose name matches (a developer's loop on one figure). */
const ONLY = flag('--only');
/** `--cpu-prof DIR`: the agents write V8 CPU profiles there when the bench stops them. */
const CPU_PROF = flag('--cpu-prof');
const WRK = existsSync(join(ROOT, '.tools', 'bin', 'wrk')) ? join(ROOT, '.tools', 'bin', 'wrk') : 'wrk';
const H2LOAD = existsSync(join(ROOT, '.tools', 'bin', 'h2load')) ? join(ROOT, '.tools', 'bin', 'h2load') : 'h2load';
const children: ChildProcess[] = [];
const stops: (() => Promise<void>)[] = [];

const log = (m: string) => process.stderr.write(`${m}\n`);
const cleanup = () => { for (const c of children) c.kill('SIGTERM'); };
process.on('exit', cleanup);
process.on('SIGINT', () => { cleanup(); process.exit(130); });
const hardStop = setTimeout(() => { log('bench: over its 9.5-minute budget, stopping'); cleanup(); process.exit(1); }, 9.5 * 60_000);
hardStop.unref();

/** Docs sections of a Node line other than 20 carry its major: `l4-bench-node24`. */
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const NODE_SUFFIX = NODE_MAJOR === 20 ? '' : `-node${NODE_MAJOR}`;

/** Replaces the fenced block between `<!-- name:start -->` and `<!-- name:end -->` in docs/benchmarks.md; appends it (with a heading) when absent. */
function writeSection(name: string, body: string): void {
  const doc = join(ROOT, 'docs', 'benchmarks.md');
  const s = readFileSync(doc, 'utf8');
  const block = `<!-- ${name}:start -->\n\`\`\`\n${body}\`\`\`\n<!-- ${name}:end -->`;
  const a = s.indexOf(`<!-- ${name}:start -->`);
  const b = s.indexOf(`<!-- ${name}:end -->`);
  if (a >= 0 && b > a) writeFileSync(doc, `${s.slice(0, a)}${block}${s.slice(b + `<!-- ${name}:end -->`.length)}`);
  else writeFileSync(doc, `${s.trimEnd()}\n\n## ${name.startsWith('l7') ? 'L7 rows' : 'L4 rows'} on Node ${NODE_MAJOR} (same machine, same bench)\n\n${block}\n`);
}

/** wrk's Lua hooks: p99.9 in done(), and an optional fixed pause between a connection's requests (paced load). */
function luaScript(delayMs: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-bench-lua-'));
  const path = join(dir, 'report.lua');
  writeFileSync(path, `${delayMs > 0 ? `function delay() return ${delayMs} end\n` : ''}` +
    'function done(summary, latency, requests)\n  io.write(string.format("P999 %d\\n", latency:percentile(99.9)))\nend\n');
  return path;
}

interface WrkResult { rps: number; p50: number; p99: number; p999: number; gbps: number }

async function wrk(url: string, conns: number, opts: { close?: boolean; delayMs?: number; threads?: number } = {}): Promise<WrkResult> {
  const args = ['-t', String(opts.threads ?? Math.min(2, conns)), '-c', String(conns), '-d', `${DURATION}s`, '--latency', '-s', luaScript(opts.delayMs ?? 0),
    ...(opts.close ? ['-H', 'Connection: close'] : []), url];
  // Asynchronous, so RSS sampling keeps running while wrk does.
  const { stdout: out } = await promisify(execFile)(WRK, args, { encoding: 'utf8' });
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const ms = (label: string) => {
    const m = new RegExp(`^\\s+${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out);
    if (!m) return NaN;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  const t = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(out);
  const bytesPerSec = t ? Number(t[1]) * { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[t[2] as 'B'] : NaN;
  return { rps: num(/Requests\/sec:\s+([\d.]+)/), p50: ms('50'), p99: ms('99'), p999: num(/^P999 (\d+)$/m) / 1000, gbps: (bytesPerSec * 8) / 1e9 };
}

/** CPU seconds and peak RSS (MB, summed over the processes) while `fn` runs. */
async function sample<T>(pids: number[], fn: () => Promise<T> | T): Promise<{ value: T; cpu: number; rss: number }> {
  const ticks = () => pids.reduce((sum, p) => {
    try { const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' '); return sum + Number(f[11]) + Number(f[12]); } catch { return sum; }
  }, 0);
  const rss = () => pids.reduce((sum, p) => {
    try { return sum + Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) / 1024; } catch { return sum; }
  }, 0);
  let peak = rss();
  const timer = setInterval(() => { peak = Math.max(peak, rss()); }, 100);
  const t0 = ticks();
  const value = await fn();
  clearInterval(timer);
  peak = Math.max(peak, rss());
  return { value, cpu: (ticks() - t0) / 100, rss: peak };
}

async function startAgent(args: string[]): Promise<{ proc: ChildProcess; api: string; gossip: number }> {
  const nodeFlags = [...(CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] : []), ...(flag('--node-flags')?.split(' ').filter(Boolean) ?? [])];
  const a = await launchAgent(['--http-port', '0', '--log-level', 'info', ...args], { nodeFlags, echo: Boolean(process.env.BENCH_AGENT_OUTPUT) });
  children.push(a.proc);
  return { proc: a.proc, api: a.url, gossip: Number(a.gossip?.split(':').pop()) };
}

async function put(api: string, body: unknown): Promise<void> {
  const r = await fetch(`${api}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify(body) });
  if (!r.ok) throw new Error(await r.text());
}

async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await ok().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`bench: ${what} not ready after 30 s`);
}

/** The nodemesh path: a server-node agent in front of nginx, a client-node agent with the upstream. */
async function startNodemeshPath(backendHost: string, backendPort: number, h2cPort: number) {
  const dataDir = () => mkdtempSync(join(tmpdir(), 'nodemesh-bench-'));
  // One CA for both agents, as for any pool (`nodemesh ca init`).
  const caDir = mkdtempSync(join(tmpdir(), 'nodemesh-bench-ca-'));
  execFileSync(process.execPath, [join(ROOT, 'bin', 'nodemesh.js'), 'ca', 'init', '--out', caDir], { stdio: 'ignore' });
  const config = join(caDir, 'agent.json');
  // Gossip encrypted as in production; the bench's own API calls go without a token (waived by name).
  writeFileSync(config, JSON.stringify({ default_intention_policy: 'allow', ca_file: join(caDir, 'ca.pem'), ca_key_file: join(caDir, 'ca-key.pem'), encrypt: randomBytes(32).toString('base64'), waive: ['acl_token'] }));
  const server = await startAgent(['--node', 'bench-server', '--bind', '127.0.242.1', '--serf-lan-port', '0', '--data-dir', dataDir(), '--config-file', config]);
  const client = await startAgent(['--node', 'bench-client', '--bind', '127.0.242.2', '--serf-lan-port', '0', '--data-dir', dataDir(), '--config-file', config, '--join', `127.0.242.1:${server.gossip}`]);
  const up = await freePort('127.0.242.4');
  await put(server.api, { Name: 'backend', Address: backendHost, Port: backendPort, Connect: { SidecarService: {} } });
  await put(client.api, { Name: 'client', Address: '127.0.242.4', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'backend', LocalBindAddress: '127.0.242.4', LocalBindPort: up }] } } } });
  const http = `http://127.0.242.4:${up}/`;
  // The same nginx as an HTTP service: the client agent routes each request (L7) instead of copying bytes (L4).
  const upL7 = await freePort('127.0.242.4');
  await put(server.api, { Name: 'backend-http', Address: backendHost, Port: backendPort, Connect: { SidecarService: {} } });
  const cfg = await fetch(`${client.api}/v1/config`, { method: 'PUT', body: JSON.stringify({ Kind: 'service-defaults', Name: 'backend-http', Protocol: 'http' }) });
  if (!cfg.ok) throw new Error(`bench: service-defaults: ${await cfg.text()}`);
  await put(client.api, { Name: 'client-http', Address: '127.0.242.4', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'backend-http', LocalBindAddress: '127.0.242.4', LocalBindPort: upL7 }] } } } });
  const l7 = `http://127.0.242.4:${upL7}/`;
  await until('nodemesh L7 path', async () => (await fetch(l7)).ok);
  // nginx's h2c listener twice: as a TCP service (HTTP/2 carried as bytes) and as an http2 service (per stream).
  const upH2L4 = await freePort('127.0.242.4');
  const upH2L7 = await freePort('127.0.242.4');
  await put(server.api, { Name: 'backend-h2-tcp', Address: backendHost, Port: h2cPort, Connect: { SidecarService: {} } });
  await put(server.api, { Name: 'backend-h2', Address: backendHost, Port: h2cPort, Connect: { SidecarService: {} } });
  const cfg2 = await fetch(`${client.api}/v1/config`, { method: 'PUT', body: JSON.stringify({ Kind: 'service-defaults', Name: 'backend-h2', Protocol: 'http2' }) });
  if (!cfg2.ok) throw new Error(`bench: service-defaults: ${await cfg2.text()}`);
  await put(client.api, { Name: 'client-h2', Address: '127.0.242.4', Port: 1, Connect: { SidecarService: { Proxy: { Upstreams: [
    { DestinationName: 'backend-h2-tcp', LocalBindAddress: '127.0.242.4', LocalBindPort: upH2L4 },
    { DestinationName: 'backend-h2', LocalBindAddress: '127.0.242.4', LocalBindPort: upH2L7 },
  ] } } } });
  const h2 = { direct: `http://${backendHost}:${h2cPort}/`, l4: `http://127.0.242.4:${upH2L4}/`, l7: `http://127.0.242.4:${upH2L7}/` };
  await until('nodemesh HTTP/2 paths', async () => (await h2load(h2.l7, 1, 1, 10)).rps > 0 && (await h2load(h2.l4, 1, 1, 10)).rps > 0);
  await until('nodemesh path', async () => (await fetch(http)).ok).catch(async (e: Error) => {
    throw new Error(`${e.message}; the client agent sees backend as ${await (await fetch(`${client.api}/v1/health/connect/backend`)).text()}`);
  });
  return { http, l7, h2, pids: () => [server.proc.pid!, client.proc.pid!] };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n: number) => (Number.isNaN(n) ? 'n/a' : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, '.tools', 'bin', 'consul')) || !existsSync(join(ROOT, '.tools', 'bin', 'nginx')) || !existsSync(HAPROXY)) {
    log('bench: installing the anchor (Consul 1.8.7), wrk and nginx into .tools…');
    execFileSync('bash', [join(ROOT, 'scripts', 'install-interop.sh')], { stdio: 'inherit' });
  }
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  // wrk counts the bytes of completed responses: a file small enough to complete many times per run.
  const BULK = 64 * 1024 * 1024;
  log('bench: starting nginx, the Consul path and the nodemesh path (this takes about 15 s)…');
  const nginxPort = await freePort('127.0.240.3');
  const h2cPort = await freePort('127.0.240.3');
  const nginx = await startNginx('127.0.240.3', nginxPort, { bulkBytes: BULK, h2cPort });
  stops.push(() => nginx.stop());
  const consul = await startConsulPath({ backendHost: '127.0.240.3', backendPort: nginxPort, sinkHost: '127.0.240.3', sinkPort: nginxPort, bindBase: '127.0.241' });
  stops.push(() => consul.stop());
  const mesh = await startNodemeshPath('127.0.240.3', nginxPort, h2cPort);
  const hap = await startHaproxyPath({ backendHost: '127.0.240.3', backendPort: nginxPort, bindBase: '127.0.243' });
  stops.push(() => hap.stop());

  const paths = {
    direct: { http: `http://127.0.240.3:${nginxPort}/`, pids: () => [] as number[] },
    consul: { http: consul.http, pids: consul.pids },
    haproxy: { http: hap.http, pids: hap.pids },
    nodemesh: mesh,
  };
  type Name = keyof typeof paths;
  const names: Name[] = ['direct', 'consul', 'haproxy', 'nodemesh'];
  interface Row { name: string; unit: string; higherBetter: boolean; run(p: (typeof paths)[Name]): Promise<WrkResult>; pick: (r: WrkResult) => number }
  const rows: Row[] = [];
  const latencyRows = (label: string, run: Row['run']) => {
    rows.push({ name: `${label} req/s`, unit: 'req/s', higherBetter: true, run, pick: (r) => r.rps });
    rows.push({ name: '  p50', unit: 'ms', higherBetter: false, run, pick: (r) => r.p50 });
    rows.push({ name: '  p99', unit: 'ms', higherBetter: false, run, pick: (r) => r.p99 });
    rows.push({ name: '  p99.9', unit: 'ms', higherBetter: false, run, pick: (r) => r.p999 });
  };
  for (const c of QUICK ? [32] : [1, 32, 256]) latencyRows(`keep-alive, ${c} conn,`, (p) => wrk(p.http, c));
  // About 5 k req/s: 50 connections, each pausing 10 ms between requests (wrk's delay hook).
  if (!QUICK) latencyRows('fixed ~5k req/s (50 conn, 10 ms pacing),', (p) => wrk(p.http, 50, { delayMs: 10 }));
  rows.push({ name: 'bulk download, 1 connection', unit: 'Gbit/s', higherBetter: true, run: (p) => wrk(`${p.http}bulk`, 1, { threads: 1 }), pick: (r) => r.gbps });
  rows.push({ name: 'new connections/s (Connection: close, 32 conn)', unit: 'conn/s', higherBetter: true, run: (p) => wrk(p.http, 32, { close: true }), pick: (r) => r.rps });

  if (ONLY) {
    const re = new RegExp(ONLY, 'i');
    const keep = new Set(rows.filter((r) => re.test(r.name)).map((r) => r.run));
    rows.splice(0, rows.length, ...rows.filter((r) => keep.has(r.run)));
  }
  // One measurement per (group of rows sharing a run) × path × repetition; alternate the order of paths.
  const groups = [...new Set(rows.map((r) => r.run))];
  const results = new Map<Row['run'], Record<Name, { r: WrkResult; cpu: number; rss: number }[]>>();
  for (let rep = 0; rep < RUNS; rep++) {
    for (const g of groups) {
      const order = names.map((_, i) => names[(i + rep) % names.length]);
      const per = results.get(g) ?? { direct: [], consul: [], haproxy: [], nodemesh: [] };
      for (const n of order) {
        const s = await sample(paths[n].pids(), () => g(paths[n]));
        per[n].push({ r: s.value, cpu: s.cpu, rss: s.rss });
      }
      results.set(g, per);
      log(`bench: run ${rep + 1}/${RUNS}: ${rows.find((r) => r.run === g)!.name.replace(/ req\/s$/, '')} done`);
    }
  }

  const table = [['metric', 'unit', 'direct', 'consul', 'haproxy', 'nodemesh', 'nodemesh/consul', 'nodemesh/haproxy', 'cpu s c/h/n', 'peak RSS MB c/h/n']];
  for (const row of rows) {
    const per = results.get(row.run)!;
    const v = (n: Name) => median(per[n].map((x) => row.pick(x.r)));
    const first = rows.find((r) => r.run === row.run) === row;
    const cpu = first ? (['consul', 'haproxy', 'nodemesh'] as const).map((n) => fmt(median(per[n].map((x) => x.cpu)))).join('/') : '';
    const rss = first ? (['consul', 'haproxy', 'nodemesh'] as const).map((n) => fmt(Math.max(...per[n].map((x) => x.rss)))).join('/') : '';
    table.push([row.name, row.unit, fmt(v('direct')), fmt(v('consul')), fmt(v('haproxy')), fmt(v('nodemesh')), `${(v('nodemesh') / v('consul')).toFixed(2)}x`, `${(v('nodemesh') / v('haproxy')).toFixed(2)}x`, cpu, rss]);
  }
  const w = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const lines = table.map((r) => r.map((c, i) => (i >= 2 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  '));
  lines.splice(1, 0, w.map((x) => '-'.repeat(x)).join('  '));
  const text = `nodemesh L4 benchmark — ${new Date().toISOString()} — ${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, load ${loadavg()[0].toFixed(2)}\n` +
    `median of ${RUNS} run(s) in rotating order, ${DURATION}s each; wrk on loopback; backend nginx (1 worker);\n` +
    'consul: Consul 1.8.7 built-in proxies (client sidecar → server sidecar); nodemesh: client-node agent → tunnel (mTLS) → server-node agent;\n' +
    'haproxy: two HAProxy 2.6 processes (1 thread each) as an mTLS pair, TCP mode;\n' +
    'cpu s / peak RSS: the proxies\' processes (consul: agent + 3 proxies; haproxy: 2; nodemesh: 2 agents) during that group of rows.\n\n' +
    `${lines.join('\n')}\n`;
  process.stdout.write(`\n${text}`);
  const l7Text = ONLY && !/l7/i.test(ONLY) ? '' : await l7Rows(`http://127.0.240.3:${nginxPort}/`, mesh.http, mesh.l7, mesh.h2, mesh.pids, { url: hap.httpMode, pids: hap.pids });
  if (l7Text) process.stdout.write(`\n${l7Text}`);
  // `--only l7 --update-docs` refreshes just the L7 section. Node 20 (the machine's) writes the main tables; another
  // Node line (scripts/with-node.sh 24 npm run bench -- --update-docs) writes sections of its own, for the comparison.
  if (process.argv.includes('--update-docs') && l7Text) writeSection(`l7-bench${NODE_SUFFIX}`, l7Text);
  if (UPDATE_DOCS) writeSection(`l4-bench${NODE_SUFFIX}`, text);
  for (const s of stops) await s().catch(() => undefined);
  cleanup();
}

/** HTTP/1.1 through nodemesh's L7 path (per-request routing) vs its L4 path vs direct, same agents and nginx. */
async function l7Rows(direct: string, l4: string, l7: string, h2: { direct: string; l4: string; l7: string }, pids: () => number[], hap: { url: string; pids: () => number[] }): Promise<string> {
  const paths = [['direct', direct], ['haproxy http', hap.url], ['nodemesh L4', l4], ['nodemesh L7', l7]] as const;
  const got = new Map<string, { r: WrkResult; cpu: number }[]>();
  for (let rep = 0; rep < RUNS; rep++) {
    for (let i = 0; i < paths.length; i++) {
      const [name, url] = paths[(i + rep) % paths.length];
      const s = await sample(name === 'direct' ? [] : name === 'haproxy http' ? hap.pids() : pids(), () => wrk(url, 32));
      got.set(name, [...(got.get(name) ?? []), { r: s.value, cpu: s.cpu }]);
    }
    log(`bench: run ${rep + 1}/${RUNS}: L7 rows done`);
  }
  const m = (name: string, pick: (r: WrkResult) => number) => median(got.get(name)!.map((x) => pick(x.r)));
  const table = [['keep-alive HTTP/1.1, 32 conn', 'unit', 'direct', 'haproxy http', 'nodemesh L4', 'nodemesh L7', 'L7/L4', 'L7/haproxy']];
  for (const [label, unit, pick] of [['req/s', 'req/s', (r: WrkResult) => r.rps], ['p50', 'ms', (r: WrkResult) => r.p50], ['p99', 'ms', (r: WrkResult) => r.p99]] as const) {
    table.push([label, unit, fmt(m('direct', pick)), fmt(m('haproxy http', pick)), fmt(m('nodemesh L4', pick)), fmt(m('nodemesh L7', pick)),
      `${(m('nodemesh L7', pick) / m('nodemesh L4', pick)).toFixed(2)}x`, `${(m('nodemesh L7', pick) / m('haproxy http', pick)).toFixed(2)}x`]);
  }
  const cpuOf = (name: string) => fmt(median(got.get(name)!.map((x) => x.cpu)));
  table.push(['proxies cpu s', 's', '', cpuOf('haproxy http'), cpuOf('nodemesh L4'), cpuOf('nodemesh L7'), '', '']);
  // HTTP/2: h2load, 32 connections × 10 concurrent streams each.
  const h2got = new Map<string, H2Result[]>();
  const h2paths = [['direct', h2.direct], ['nodemesh L4', h2.l4], ['nodemesh L7', h2.l7]] as const;
  for (let rep = 0; rep < RUNS; rep++) {
    for (let i = 0; i < h2paths.length; i++) {
      const [name, url] = h2paths[(i + rep) % h2paths.length];
      h2got.set(name, [...(h2got.get(name) ?? []), await h2load(url, 32, 10, 0)]);
    }
    log(`bench: run ${rep + 1}/${RUNS}: HTTP/2 rows done`);
  }
  const h = (name: string, pick: (r: H2Result) => number) => median(h2got.get(name)!.map(pick));
  table.push(['HTTP/2 (h2c), 32 conn × 10 streams', '', '', '', '', '', '', '']);
  for (const [label, unit, pick] of [['req/s', 'req/s', (r: H2Result) => r.rps], ['mean latency', 'ms', (r: H2Result) => r.meanMs]] as const) {
    table.push([`  ${label}`, unit, fmt(h('direct', pick)), '', fmt(h('nodemesh L4', pick)), fmt(h('nodemesh L7', pick)), `${(h('nodemesh L7', pick) / h('nodemesh L4', pick)).toFixed(2)}x`, '']);
  }
  const w = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const lines = table.map((r) => r.map((c, i) => (i >= 2 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  '));
  lines.splice(1, 0, w.map((x) => '-'.repeat(x)).join('  '));
  return `L7 rows — ${new Date().toISOString()} — same agents and nginx; L7 = per-request routing on the client agent (protocol http), L4 = bytes;\nhaproxy http: the HAProxy pair in HTTP mode (per request, reused mTLS connections);\nmedian of ${RUNS} run(s), ${DURATION}s each; HTTP/2 by h2load (it reports mean latency, not percentiles).\n\n${lines.join('\n')}\n`;
}

interface H2Result { rps: number; meanMs: number }

/** h2load for DURATION seconds (or `requests` requests when given): req/s and mean request time. */
async function h2load(url: string, conns: number, streams: number, requests: number): Promise<H2Result> {
  const args = ['-c', String(conns), '-m', String(streams), ...(requests ? ['-n', String(requests)] : ['-D', String(DURATION)]), url];
  const { stdout } = await promisify(execFile)(H2LOAD, args, { timeout: (DURATION + 30) * 1000 });
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(stdout)?.[1] ?? NaN);
  const ok = Number(/requests: .* (\d+) succeeded/.exec(stdout)?.[1] ?? 0);
  const m = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(stdout);
  const toMs = (v: string, u: string) => Number(v) * (u === 'us' ? 0.001 : u === 's' ? 1000 : 1);
  return { rps: ok > 0 ? rps : 0, meanMs: m ? toMs(m[5], m[6]) : NaN };
}

main().catch(async (e) => { log(`bench failed: ${(e as Error).stack}`); for (const s of stops) await s().catch(() => undefined); cleanup(); process.exit(1); });
