// Test fixtures: a real agent in-process on port 0, or as a child process of the built CLI.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { CLI, launchAgent, ROOT } from './agent-launcher.js';
import { startAgent, type RunningAgent } from '../../agent/agent.js';
import type { AgentConfig } from '../../config/agent-config.js';
import { defaultConfig } from '../../config/agent-config.js';
import type { GossipMembership } from '../../backend/gossip/gossip-membership.js';
import { CertificateAuthority } from '../../identity/ca/certificate-authority.js';
import type { LeafCerts } from '../../identity/ca/leaf-certs.js';
import type { IntentionStore } from '../../policy/intention-store.js';

export { CLI, ROOT };

export function tempDir(prefix = 'nodemesh-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A gossip-backend agent: its built-in CA, leaf signer, intention store and gossip are always there. */
export interface TestAgent extends Omit<RunningAgent, 'gossip' | 'ca' | 'intentions' | 'leaves'> {
  gossip: GossipMembership;
  ca: CertificateAuthority;
  intentions: IntentionStore;
  leaves: LeafCerts;
  url: string;
  /** fetch against the agent's API. */
  api(path: string, init?: RequestInit): Promise<Response>;
}

/** Starts a real agent in this process, HTTP on 127.0.0.1 and a free port. */
export async function startTestAgent(overrides: Partial<AgentConfig> = {}, log?: Logger): Promise<TestAgent> {
  const config: AgentConfig = {
    ...defaultConfig(), dev: true, node: 'node-1', bind: '127.0.0.1', client: '127.0.0.1', httpPort: 0,
    dataDir: tempDir(), logLevel: 'warn', serfLanPort: 0, dnsPort: 0, drainTimeoutMs: 1000, ...overrides,
  };
  const agent = await startAgent(config, log ?? pino({ level: process.env.NODEMESH_TEST_LOG ?? 'silent' }));
  const url = `http://127.0.0.1:${agent.http.port}`;
  const api = (path: string, init?: RequestInit) => fetch(`${url}${path}`, init);
  if (agent.backend !== 'gossip') throw new Error('startTestAgent is for gossip-backend agents; use startConsulModeAgent');
  return Object.assign(agent, { url, api }) as TestAgent;
}

/** A real agent in this process with the Consul backend (`consulAddr`), HTTP on 127.0.0.1 and a free port. */
export async function startConsulModeAgent(consulAddr: string, overrides: Partial<AgentConfig> = {}): Promise<RunningAgent & { url: string; api(path: string, init?: RequestInit): Promise<Response> }> {
  const config: AgentConfig = {
    ...defaultConfig(), node: 'node-1', bind: '127.0.0.1', client: '127.0.0.1', httpPort: 0,
    dataDir: tempDir(), logLevel: 'warn', serfLanPort: 0, dnsPort: 0, drainTimeoutMs: 1000, consulAddr, waive: ['acl_token'], ...overrides,
  };
  const agent = await startAgent(config, pino({ level: process.env.NODEMESH_TEST_LOG ?? 'silent' }));
  const url = `http://127.0.0.1:${agent.http.port}`;
  return Object.assign(agent, { url, api: (path: string, init?: RequestInit) => fetch(`${url}${path}`, init) });
}

/** One CA for several agents (as `nodemesh ca init` makes it), and an allow-by-default policy: the config keys to pass each agent. */
export async function sharedCa(): Promise<{ caFile: string; caKeyFile: string; defaultIntentionPolicy: 'allow' }> {
  const dir = tempDir();
  const root = await CertificateAuthority.createRoot();
  writeFileSync(join(dir, 'ca.pem'), root.certPem);
  writeFileSync(join(dir, 'ca-key.pem'), root.keyPem, { mode: 0o600 });
  return { caFile: join(dir, 'ca.pem'), caKeyFile: join(dir, 'ca-key.pem'), defaultIntentionPolicy: 'allow' };
}

let processCa: Promise<{ caFile: string; caKeyFile: string }> | undefined;
/**
 * One root for every agent of this test process that should share a pool: replicated state is taken only from
 * agents whose signing chain ends at the same root (docs/security.md), so a pool needs one CA.
 */
export function poolCa(): Promise<{ caFile: string; caKeyFile: string }> {
  processCa ??= sharedCa().then(({ caFile, caKeyFile }) => ({ caFile, caKeyFile }));
  return processCa;
}

export const put = (body?: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'PUT', headers: { 'Content-Type': 'application/json', ...headers },
  body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
});

export interface AgentChild {
  proc: ChildProcess;
  url: string;
  port: number;
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

/** Runs the built CLI and collects its output. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => { stdout += c; });
    p.stderr.on('data', (c) => { stderr += c; });
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * A non-dev agent refuses to start without a gossip key, an ACL token and the shared CA files (start-posture.ts);
 * fixtures about something else waive them by name, unless the test passes --dev or its own --waive, or turns
 * this off (`autoWaive: false`) to see the agent exactly as configured.
 */
export const WAIVE_ALL = ['--waive', 'gossip_key', '--waive', 'acl_token', '--waive', 'ca_files'];

/** Starts `nodemesh agent` as a child process (HTTP and gossip on port 0) and waits until it runs. */
export async function spawnAgent(args: string[], env: Record<string, string> = {}, opts: { autoWaive?: boolean } = {}): Promise<AgentChild> {
  const waive = opts.autoWaive === false || args.includes('--dev') || args.includes('--waive') ? [] : WAIVE_ALL;
  const a = await launchAgent(['--http-port', '0', '--serf-lan-port', '0', ...waive, ...args], { env, timeoutMs: 15_000 });
  return { proc: a.proc, port: a.port, url: a.url, output: a.output, exited: a.exited };
}
