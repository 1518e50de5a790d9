// The benchmark's anchor: the same two paths as nodemesh's, through Consul 1.8.7's built-in proxy.
// consul agent -dev (from .tools, installed by scripts/install-interop.sh) with every port moved off its default onto a
// loopback address of its own, and three `consul connect proxy -sidecar-for` processes:
//   wrk → client sidecar (upstream listener, plain TCP) → mTLS → backend sidecar (public listener) → backend
//   bulk → client sidecar (upstream listener)            → mTLS → sink sidecar (public listener)    → sink
// so exactly two Consul proxies are in each path. Addresses, given bindBase B: agent B.1, backend sidecar B.2,
// sink sidecar B.3, the client's upstream listeners B.4. Nothing binds 0.0.0.0.
// Note: the built-in proxy closes both sockets on EOF from either side (io.Copy both ways), so a client that half-closes
// and then waits for a reply (bench/backend-server.ts's sink protocol) loses the reply on this path.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { consulDevHcl } from '../test/helpers/consul-dev.js';
import { freePort } from '../test/helpers/free-port.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CONSUL = join(ROOT, '.tools', 'bin', 'consul');

export interface ConsulPath {
  /** URL wrk hits: the client sidecar's upstream listener for `backend`. */
  http: string;
  /** The client sidecar's upstream listener for `sink`. */
  sinkHost: string;
  sinkPort: number;
  /** The consul agent and the three proxy processes, for CPU/RSS sampling. */
  pids: () => number[];
  stop(): Promise<void>;
}

export interface ConsulPathOptions {
  backendHost: string;
  backendPort: number;
  sinkHost: string;
  sinkPort: number;
  /** The first three octets of the loopback addresses the agent and proxies bind, e.g. '127.0.20'. */
  bindBase: string;
}

const live = new Set<() => void>();
process.once('exit', () => { for (const kill of live) kill(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function httpGet(host: string, port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function tcpConnect(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port }, () => { s.destroy(); resolve(); });
    s.on('error', reject);
  });
}

export async function startConsulPath(opts: ConsulPathOptions): Promise<ConsulPath> {
  if (!existsSync(CONSUL)) throw new Error(`${CONSUL} is missing: run scripts/install-interop.sh`);
  if (!/^127\.\d{1,3}\.\d{1,3}$/.test(opts.bindBase)) throw new Error(`bindBase must be a loopback /24 prefix like 127.0.20, not ${opts.bindBase}`);
  const ip = { agent: `${opts.bindBase}.1`, backend: `${opts.bindBase}.2`, sink: `${opts.bindBase}.3`, client: `${opts.bindBase}.4` };
  const taken = new Set<number>();
  const port = {
    http: await freePort(ip.agent, taken), dns: await freePort(ip.agent, taken), serfLan: await freePort(ip.agent, taken),
    serfWan: await freePort(ip.agent, taken), server: await freePort(ip.agent, taken), grpc: await freePort(ip.agent, taken),
    backendPublic: await freePort(ip.backend, taken), sinkPublic: await freePort(ip.sink, taken),
    upBackend: await freePort(ip.client, taken), upSink: await freePort(ip.client, taken),
  };
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-consul-anchor-'));
  const api = `http://${ip.agent}:${port.http}`;
  writeFileSync(join(dir, 'anchor.hcl'), `# written by bench/consul-anchor.ts\n${consulDevHcl('nodemesh-anchor', ip.agent, port)}`);

  interface Proc { name: string; proc: ChildProcess; exited: boolean; out: string; done: Promise<void> }
  const procs: Proc[] = [];
  const start = (name: string, args: string[]) => {
    // setpriv sets the kernel's parent-death signal and execs, so the pid is consul's own and a bench killed hard
    // still takes its Consul processes with it.
    const tie = existsSync('/usr/bin/setpriv');
    const proc = spawn(tie ? '/usr/bin/setpriv' : CONSUL, tie ? ['--pdeathsig', 'SIGKILL', '--', CONSUL, ...args] : args,
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CONSUL_HTTP_ADDR: api } });
    const p: Proc = { name, proc, exited: false, out: '', done: Promise.resolve() };
    p.done = new Promise((r) => proc.once('exit', () => { p.exited = true; r(); }));
    const keep = (c: Buffer) => { p.out = (p.out + c).slice(-4000); };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    proc.unref();
    (proc.stdout as unknown as { unref(): void }).unref();
    (proc.stderr as unknown as { unref(): void }).unref();
    procs.push(p);
    return p;
  };
  const kill = () => {
    for (const p of procs) if (!p.exited) try { p.proc.kill('SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  };
  live.add(kill);
  const fail = (what: string): never => {
    kill();
    live.delete(kill);
    throw new Error(`consul anchor: ${what}\n${procs.map((p) => `--- ${p.name}${p.exited ? ' (exited)' : ''}:\n${p.out.trim()}`).join('\n')}`);
  };
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${api}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (!r.ok) fail(`${method} ${path} → ${r.status} ${text}`);
    return text;
  };
  const waitFor = async (what: string, ms: number, ok: () => Promise<boolean>) => {
    const deadline = Date.now() + ms;
    for (;;) {
      for (const p of procs) if (p.exited) fail(`${p.name} exited while waiting for ${what}`);
      try { if (await ok()) return; } catch { /* not yet */ }
      if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
      await sleep(100);
    }
  };

  const agent = start('consul agent', ['agent', '-dev', '-config-file', join(dir, 'anchor.hcl'),
    '-bind', ip.agent, '-client', ip.agent, '-advertise', ip.agent]);
  await waitFor('a leader', 30_000, async () => (await (await fetch(`${api}/v1/status/leader`)).json()) !== '');
  await waitFor('the Connect CA', 30_000, async () => {
    const r = await fetch(`${api}/v1/agent/connect/ca/roots`);
    return r.ok && ((((await r.json()) as { Roots?: unknown[] }).Roots?.length ?? 0) > 0);
  });

  // Sidecars with explicit addresses and ports (the public listener binds the sidecar's Address:Port). Their checks are
  // Consul's two default sidecar checks written out, because 1.8.7's default TCP check dials
  // Proxy.LocalServiceAddress:<sidecar port> (here the backend's host), not the sidecar's Address, and so stays critical;
  // the upstream side only dials instances that pass (/v1/health/connect/<dest>?passing, per new connection).
  const sidecarChecks = (parent: string, host: string, p: number) => [
    { Name: 'Connect Sidecar Listening', TCP: `${host}:${p}`, Interval: '10s' },
    { Name: `Connect Sidecar Aliasing ${parent}`, AliasService: parent },
  ];
  await call('PUT', '/v1/agent/service/register', {
    Name: 'backend', Address: opts.backendHost, Port: opts.backendPort,
    Connect: { SidecarService: { Address: ip.backend, Port: port.backendPublic, Checks: sidecarChecks('backend', ip.backend, port.backendPublic), Proxy: { LocalServiceAddress: opts.backendHost, LocalServicePort: opts.backendPort } } },
  });
  await call('PUT', '/v1/agent/service/register', {
    Name: 'sink', Address: opts.sinkHost, Port: opts.sinkPort,
    Connect: { SidecarService: { Address: ip.sink, Port: port.sinkPublic, Checks: sidecarChecks('sink', ip.sink, port.sinkPublic), Proxy: { LocalServiceAddress: opts.sinkHost, LocalServicePort: opts.sinkPort } } },
  });
  // The client app itself never listens; its sidecar's public listener is unused, but it gets a loopback address anyway.
  const clientPublic = await freePort(ip.client, taken);
  await call('PUT', '/v1/agent/service/register', {
    Name: 'client', Address: ip.client, Port: 1,
    Connect: { SidecarService: { Address: ip.client, Port: clientPublic, Checks: sidecarChecks('client', ip.client, clientPublic), Proxy: { Upstreams: [
      { DestinationName: 'backend', LocalBindAddress: ip.client, LocalBindPort: port.upBackend },
      { DestinationName: 'sink', LocalBindAddress: ip.client, LocalBindPort: port.upSink },
    ] } } },
  });
  // Dev mode has ACLs off, so the default is allow anyway; explicit intentions keep the result independent of that.
  for (const dst of ['backend', 'sink']) {
    await call('POST', '/v1/connect/intentions', { SourceName: 'client', DestinationName: dst, SourceType: 'consul', Action: 'allow' });
  }

  const proxies = ['backend', 'sink', 'client'].map((svc) =>
    start(`proxy ${svc}`, ['connect', 'proxy', '-sidecar-for', svc, '-http-addr', api, '-log-level', 'warn']));

  await waitFor('healthy backend and sink sidecars', 60_000, async () => {
    for (const n of ['backend', 'sink']) {
      const list = (await (await fetch(`${api}/v1/health/connect/${n}?passing`)).json()) as unknown[];
      if (list.length !== 1) return false;
    }
    return true;
  });
  await waitFor('an HTTP GET through the upstream', 30_000, async () => (await httpGet(ip.client, port.upBackend)).status === 200);
  await waitFor('the sink upstream listener', 10_000, async () => { await tcpConnect(ip.client, port.upSink); return true; });

  return {
    http: `http://${ip.client}:${port.upBackend}/`,
    sinkHost: ip.client,
    sinkPort: port.upSink,
    pids: () => [agent, ...proxies].filter((p) => !p.exited).map((p) => p.proc.pid!),
    async stop() {
      // Proxies first (they deregister nothing in -sidecar-for mode), then the agent; SIGKILL after 5s.
      for (const group of [proxies, [agent]]) {
        for (const p of group) if (!p.exited) p.proc.kill('SIGTERM');
        const t = setTimeout(() => { for (const p of group) if (!p.exited) p.proc.kill('SIGKILL'); }, 5000);
        await Promise.all(group.map((p) => p.done));
        clearTimeout(t);
      }
      kill();
      live.delete(kill);
    },
  };
}
