// `npm run bench:gossip`: N nodemesh agents vs N real serf agents on loopback — time for a change to reach every
// node (a service registration / a user event), and gossip packets and bytes per node per second at rest.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchAgent } from '../test/helpers/agent-launcher.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SERF = join(ROOT, '.tools', 'bin', 'serf');
const SIZES = process.argv.includes('--quick') ? [10] : [10, 30];
const REST_MS = 10_000;
const children: ChildProcess[] = [];
const log = (m: string) => process.stderr.write(`${m}\n`);
const cleanup = () => { for (const c of children) c.kill('SIGKILL'); children.length = 0; };
process.on('exit', cleanup);
const hardStop = setTimeout(() => { log('bench: over its 9-minute budget, stopping'); cleanup(); process.exit(1); }, 9 * 60_000);
hardStop.unref();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function spawnUntil(cmd: string, args: string[], ready: RegExp): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`did not start: ${out.slice(-500)}`)), 30_000);
    const look = (c: Buffer) => { out += c; const m = ready.exec(out); if (m) { clearTimeout(t); resolve({ proc, match: m }); } };
    proc.stdout!.on('data', look);
    proc.stderr!.on('data', look);
  });
}

async function gossipTraffic(api: string): Promise<{ packets: number; bytes: number }> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const v = (unit: string) => Number(new RegExp(`^nodemesh_gossip_udp_${unit}_total\\{direction="sent"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { packets: v('packets'), bytes: v('bytes') };
}

async function nodemesh(n: number): Promise<{ converge: number; pps: number; bps: number }> {
  const apis: string[] = [];
  let seed = '';
  // One root, and each agent its own intermediate naming its node, as a hardened pool runs (docs/security.md): every
  // node entry is signed by its node and checked by every peer, so convergence includes that cost.
  const caDir = mkdtempSync(join(tmpdir(), 'nm-bench-ca-'));
  const cli = (...a: string[]) => execFileSync(process.execPath, ['bin/nodemesh.js', ...a], { cwd: ROOT, stdio: 'ignore' });
  cli('ca', 'init', '--out', caDir);
  for (let i = 1; i <= n; i++) {
    cli('ca', 'issue-intermediate', '--ca-file', join(caDir, 'ca.pem'), '--ca-key-file', join(caDir, 'ca-key.pem'), '--node', `nm-${i}`, '--out', caDir);
    const config = join(caDir, `nm-${i}.json`);
    writeFileSync(config, JSON.stringify({ ca_file: join(caDir, `nm-${i}-ca.pem`), ca_key_file: join(caDir, `nm-${i}-ca-key.pem`) }));
    const args = ['--dev', '--config-file', config, '--node', `nm-${i}`, '--bind', `127.0.209.${i}`, '--http-port', '0', '--serf-lan-port', '0', '--data-dir', mkdtempSync(join(tmpdir(), 'nm-bench-')), ...(seed ? ['--join', seed] : [])];
    const agent = await launchAgent(args, { timeoutMs: 30_000 });
    children.push(agent.proc);
    apis.push(agent.url);
    if (!seed) seed = agent.gossip ?? '';
  }
  const fix = apis;
  // Everyone sees everyone first.
  for (let i = 0; i < 300; i++) {
    const counts = await Promise.all(fix.map(async (a) => ((await (await fetch(`${a}/v1/agent/members`)).json()) as unknown[]).length));
    if (counts.every((c) => c === n)) break;
    await sleep(100);
  }
  await sleep(2000);
  const t0 = await Promise.all(fix.map(gossipTraffic));
  await sleep(REST_MS);
  const t1 = await Promise.all(fix.map(gossipTraffic));
  const pps = t1.reduce((s, t, i) => s + t.packets - t0[i].packets, 0) / n / (REST_MS / 1000);
  const bps = t1.reduce((s, t, i) => s + t.bytes - t0[i].bytes, 0) / n / (REST_MS / 1000);
  const started = performance.now();
  await fetch(`${fix[0]}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify({ Name: 'bench-probe', Port: 1 }) });
  const pending = new Set(fix);
  while (pending.size && performance.now() - started < 60_000) {
    await Promise.all([...pending].map(async (a) => {
      const rows = (await (await fetch(`${a}/v1/catalog/service/bench-probe`)).json()) as unknown[];
      if (rows.length) pending.delete(a);
    }));
    if (pending.size) await sleep(10);
  }
  const converge = pending.size ? NaN : performance.now() - started;
  cleanup();
  await sleep(500);
  return { converge, pps, bps };
}

async function serf(n: number): Promise<{ converge: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'serf-bench-'));
  for (let i = 1; i <= n; i++) {
    const handler = `user=sh -c 'date +%s%N > ${dir}/$SERF_SELF_NAME'`;
    await spawnUntil(SERF, ['agent', `-node=sf-${i}`, `-bind=127.0.210.${i}:7946`, `-rpc-addr=127.0.210.${i}:7373`, `-event-handler=${handler}`, ...(i > 1 ? ['-join=127.0.210.1:7946'] : [])], /Serf agent running/);
  }
  for (let i = 0; i < 300; i++) {
    const out = execFileSync(SERF, ['members', '-rpc-addr=127.0.210.1:7373', '-status=alive'], { encoding: 'utf8' });
    if (out.trim().split('\n').length >= n) break;
    await sleep(100);
  }
  await sleep(2000);
  const started = Date.now();
  execFileSync(SERF, ['event', '-rpc-addr=127.0.210.1:7373', 'bench', 'x']);
  while (readdirSync(dir).length < n && Date.now() - started < 60_000) await sleep(10);
  const converge = readdirSync(dir).length < n ? NaN : Date.now() - started;
  cleanup();
  await sleep(500);
  return { converge };
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  const haveSerf = existsSync(SERF);
  if (!haveSerf) log('bench: .tools/bin/serf missing (run scripts/install-interop.sh): serf column skipped');
  const rows: string[][] = [['nodes', 'nodemesh: registration on all (ms)', 'serf: user event on all (ms)', 'nodemesh gossip at rest: pkts/s/node', 'bytes/s/node']];
  for (const n of SIZES) {
    log(`bench: ${n} nodemesh agents…`);
    const nm = await nodemesh(n);
    log(`bench: ${n} serf agents…`);
    const sf = haveSerf ? await serf(n) : { converge: NaN };
    rows.push([String(n), nm.converge.toFixed(0), Number.isNaN(sf.converge) ? 'n/a' : sf.converge.toFixed(0), nm.pps.toFixed(1), nm.bps.toFixed(0)]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  process.stdout.write(`\ngossip convergence — ${new Date().toISOString()} — ${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, loopback, LAN timings (gossip 200 ms, probe 1 s)\n\n` +
    `${rows.map((r) => r.map((c, i) => (i ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ')).join('\n')}\n`);
}

main().catch((e) => { log(`bench failed: ${(e as Error).stack}`); cleanup(); process.exit(1); });
