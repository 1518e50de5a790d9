// Test fixture: a real Consul 1.8.7 dev agent (from .tools, scripts/install-interop.sh) on one loopback address, every port its own; and `consul connect proxy` processes.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './agent-process.js';
import { freePort } from './free-port.js';

export const CONSUL_BIN = join(ROOT, '.tools', 'bin', 'consul');

/** Why Consul tests cannot run here, or undefined. Under CI a missing binary is a failure, not a skip. */
export function consulMissing(): string | undefined {
  if (existsSync(CONSUL_BIN)) return undefined;
  const why = `${CONSUL_BIN} is missing: run scripts/install-interop.sh`;
  if (process.env.CI) throw new Error(why);
  return why;
}

export interface ConsulDev {
  /** http://ip:port of the HTTP API. */
  addr: string;
  ip: string;
  call(method: string, path: string, body?: unknown): Promise<{ status: number; text: string; json<T = unknown>(): T }>;
  /** Runs the consul CLI against this agent. */
  cli(args: string[]): Promise<{ code: number; out: string }>;
  /** Starts a `consul connect proxy` with these arguments (killed by stop()). */
  proxy(args: string[]): ChildProcess & { output(): string };
  /** Stops the agent (SIGTERM, then SIGKILL); a dev agent forgets everything. */
  halt(): Promise<void>;
  /** Starts it again on the same address and ports. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ConsulPorts { http: number; dns: number; serfLan: number; serfWan: number; server: number; grpc: number }

/** A dev agent's config: everything on `ip`, every port its own, Connect on, no HTTPS (shared with bench/consul-anchor.ts). */
export function consulDevHcl(nodeName: string, ip: string, port: ConsulPorts): string {
  return `node_name = "${nodeName}"
bind_addr = "${ip}"
client_addr = "${ip}"
advertise_addr = "${ip}"
advertise_addr_wan = "${ip}"
ports {
  http = ${port.http}
  https = -1
  dns = ${port.dns}
  serf_lan = ${port.serfLan}
  serf_wan = ${port.serfWan}
  server = ${port.server}
  grpc = ${port.grpc}
}
connect { enabled = true }
disable_update_check = true
log_level = "warn"
`;
}

/**
 * `persistent`: a single-server cluster with a data dir instead of `-dev`, so a restart keeps its catalog, intentions
 * and CA, as a production server's would.
 */
export async function startConsulDev(ip: string, opts: { persistent?: boolean } = {}): Promise<ConsulDev> {
  const taken = new Set<number>();
  const port = {
    http: await freePort(ip, taken), dns: await freePort(ip, taken), serfLan: await freePort(ip, taken),
    serfWan: await freePort(ip, taken), server: await freePort(ip, taken), grpc: await freePort(ip, taken),
  };
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-consul-dev-'));
  const addr = `http://${ip}:${port.http}`;
  writeFileSync(join(dir, 'dev.hcl'), consulDevHcl('consul-dev', ip, port) + (opts.persistent ? 'performance { raft_multiplier = 1 }\n' : ''));
  const children = new Set<ChildProcess>();
  // setpriv ties each child to this process (parent-death signal), so a test killed hard takes Consul with it.
  const spawnConsul = (args: string[]) => {
    const tie = existsSync('/usr/bin/setpriv');
    const p = spawn(tie ? '/usr/bin/setpriv' : CONSUL_BIN, tie ? ['--pdeathsig', 'SIGKILL', '--', CONSUL_BIN, ...args] : args,
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CONSUL_HTTP_ADDR: addr } });
    let out = '';
    const keep = (c: Buffer) => { out = (out + c).slice(-8000); };
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    children.add(p);
    p.once('exit', () => children.delete(p));
    return Object.assign(p, { output: () => out });
  };
  let agent: ReturnType<typeof spawnConsul> | undefined;
  const call: ConsulDev['call'] = async (method, path, body) => {
    const r = await fetch(`${addr}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, text, json: <T>() => JSON.parse(text) as T };
  };
  const start = async () => {
    const mode = opts.persistent ? ['-server', '-bootstrap-expect=1', '-data-dir', join(dir, 'data')] : ['-dev'];
    agent = spawnConsul(['agent', ...mode, '-config-file', join(dir, 'dev.hcl')]);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (agent.exitCode !== null) throw new Error(`consul dev agent exited: ${agent.output()}`);
      try {
        const leader = await call('GET', '/v1/status/leader');
        const roots = await call('GET', '/v1/agent/connect/ca/roots');
        if (leader.status === 200 && leader.text !== '""' && roots.status === 200 && (roots.json<{ Roots?: unknown[] }>().Roots?.length ?? 0) > 0) return;
      } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`consul dev agent not ready after 30 s: ${agent.output()}`);
      await sleep(100);
    }
  };
  const kill = async (p: ChildProcess) => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  };
  await start();
  return {
    addr, ip, call,
    cli: (args) => new Promise((resolve) => {
      const p = spawn(CONSUL_BIN, args, { env: { ...process.env, CONSUL_HTTP_ADDR: addr }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (c) => { out += c; });
      p.stderr.on('data', (c) => { out += c; });
      p.on('close', (code) => resolve({ code: code ?? -1, out }));
    }),
    proxy: (args) => spawnConsul(['connect', 'proxy', '-http-addr', addr, '-log-level', 'warn', ...args]),
    halt: async () => { if (agent) await kill(agent); },
    start,
    async stop() {
      await Promise.all([...children].map(kill));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
