// Chaos fixtures: a pool of real agent processes on their own loopback addresses, hardened as in production
// (gossip key, ACL token, shared CA, default deny), that can be killed with SIGKILL and started again on the same data.

import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, launchAgent, type LaunchedAgent } from '../helpers/agent-launcher.js';

export const HTTP_PORT = 18500;
export const GOSSIP_PORT = 18301;

/** What every agent of one pool shares: the CA files, the gossip key, the ACL token. */
export interface PoolSecrets { dir: string; caFile: string; caKeyFile: string; encrypt: string; token: string }

export function poolSecrets(): PoolSecrets {
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-chaos-'));
  execFileSync(process.execPath, [CLI, 'ca', 'init', '--out', join(dir, 'ca')], { stdio: 'ignore' });
  return { dir, caFile: join(dir, 'ca', 'ca.pem'), caKeyFile: join(dir, 'ca', 'ca-key.pem'), encrypt: randomBytes(32).toString('base64'), token: randomBytes(16).toString('hex') };
}

export class ChaosAgent {
  proc?: ChildProcess;
  private launched?: LaunchedAgent;
  readonly dataDir: string;
  readonly configFile: string;
  readonly url: string;

  constructor(readonly name: string, readonly ip: string, readonly secrets: PoolSecrets, config: Record<string, unknown>) {
    this.dataDir = mkdtempSync(join(secrets.dir, `${name}-`));
    this.configFile = join(secrets.dir, `${name}.json`);
    this.url = `http://${ip}:${HTTP_PORT}`;
    writeFileSync(this.configFile, JSON.stringify({
      node: name, bind: ip, client: ip, http_port: HTTP_PORT, serf_lan_port: GOSSIP_PORT, data_dir: this.dataDir,
      encrypt: secrets.encrypt, acl_token: secrets.token, ca_file: secrets.caFile, ca_key_file: secrets.caKeyFile,
      default_intention_policy: 'deny', log_level: 'info', drain_timeout: '1s', ...config,
    }, null, 2));
  }

  get gossipAddr(): string {
    return `${this.ip}:${GOSSIP_PORT}`;
  }

  /** Starts the process (again, on the same data dir) and waits until it runs (the shared launcher ties it to this process). */
  async start(join: string[] = []): Promise<void> {
    try {
      const a = await launchAgent(['--config-file', this.configFile, ...join.flatMap((j) => ['--join', j])], { keepBytes: 40_000 });
      this.proc = a.proc;
      this.launched = a;
    } catch (e) {
      throw new Error(`${this.name}: ${(e as Error).message}`);
    }
  }

  /** SIGKILL: no drain, no leave, no flush — whatever was not on disk is gone. */
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  }

  output(): string {
    return this.launched?.output() ?? '';
  }

  headers(): Record<string, string> {
    return { 'X-Consul-Token': this.secrets.token };
  }

  /** An API call that must succeed (an acknowledged write); returns the parsed body. */
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await fetch(`${this.url}${path}`, { method, headers: this.headers(), body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
    const text = await r.text();
    if (!r.ok) throw new Error(`${this.name}: ${method} ${path} → ${r.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  async get<T = unknown>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }
}

/** Starts agents `names` on `${prefix}.1`, `.2`, …; every later one joins the first. */
export async function startPool(stage: Stage, prefix: string, names: string[], config: Record<string, unknown> = {}): Promise<{ agents: ChaosAgent[]; secrets: PoolSecrets }> {
  const secrets = poolSecrets();
  const agents = names.map((n, i) => stage.keep(new ChaosAgent(n, `${prefix}.${i + 1}`, secrets, config), (a) => a.stop()));
  await agents[0].start();
  for (const a of agents.slice(1)) await a.start([agents[0].gossipAddr]);
  return { agents, secrets };
}

/** Members as an agent sees them: name → Consul status (1 alive, 3 left, 4 failed). */
export async function memberStatus(a: ChaosAgent): Promise<Record<string, number>> {
  const list = await a.get<{ Name: string; Status: number }[]>('/v1/agent/members');
  return Object.fromEntries(list.map((m) => [m.Name, m.Status]));
}

/** Every agent sees every agent alive (throws otherwise, for waitFor). */
export async function allAlive(agents: ChaosAgent[]): Promise<void> {
  for (const x of agents) {
    const st = await memberStatus(x);
    for (const y of agents) assert.equal(st[y.name], 1, `${x.name} sees ${y.name} alive`);
  }
}

/** Prints one line of what a scenario did or saw (the spec reporter shows stdout of the test file). */
export function say(scenario: string, line: string): void {
  process.stdout.write(`# [${scenario}] ${line}\n`);
}

/** What a scenario started, stopped in reverse order after it (also when it failed). */
export class Stage {
  private readonly stops: (() => unknown)[] = [];

  keep<T>(thing: T, stop: (t: T) => unknown): T {
    this.stops.push(() => stop(thing));
    return thing;
  }

  async end(): Promise<void> {
    for (const s of this.stops.reverse()) {
      try {
        await s();
      } catch { /* keep stopping the rest */ }
    }
  }
}
