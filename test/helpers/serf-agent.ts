// Fixture: a real `serf agent` from Debian's package (installed into .tools/ by scripts/install-interop.sh).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './agent-process.js';

export const SERF = join(ROOT, '.tools', 'bin', 'serf');

/** Interop tests need the binary: absent, they skip loudly — except under CI, where that is a failure. */
export function serfAvailable(): boolean {
  if (existsSync(SERF)) return true;
  if (process.env.CI === 'true') throw new Error(`${SERF} is missing: .ci/run must run scripts/install-interop.sh`);
  process.stderr.write(`\n*** SKIPPING serf interop tests: ${SERF} not found; run scripts/install-interop.sh ***\n\n`);
  return false;
}

export interface SerfAgent { proc: ChildProcess; bind: string; rpc: string; output(): string; stop(): Promise<void> }

export async function startSerf(name: string, ip: string, extra: string[] = []): Promise<SerfAgent> {
  const bind = `${ip}:7946`;
  const rpc = `${ip}:7373`;
  const proc = spawn(SERF, ['agent', `-node=${name}`, `-bind=${bind}`, `-rpc-addr=${rpc}`, '-log-level=debug', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (c) => { out += c; });
  proc.stderr!.on('data', (c) => { out += c; });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serf did not start:\n${out}`)), 10_000);
    const look = () => { if (/Serf agent running|agent: Serf agent starting/.test(out) || out.includes('RPC addr')) { clearTimeout(t); resolve(); } };
    proc.stdout!.on('data', look);
    void exited.then(() => { clearTimeout(t); reject(new Error(`serf exited:\n${out}`)); });
  });
  return {
    proc, bind, rpc, output: () => out,
    stop: async () => { proc.kill('SIGKILL'); await exited; },
  };
}

export interface SerfMember { name: string; addr: string; port: number; tags: Record<string, string>; status: string }

export function serfCli(rpc: string, ...args: string[]): Promise<string> {
  // Go's flag parsing stops at the first positional argument: the RPC flag goes right after the command.
  const [cmd, ...rest] = args;
  return new Promise((resolve, reject) => execFile(SERF, [cmd, `-rpc-addr=${rpc}`, ...rest], { encoding: 'utf8' }, (e, stdout, stderr) => (e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout))));
}

export async function serfMembers(rpc: string): Promise<SerfMember[]> {
  return (JSON.parse(await serfCli(rpc, 'members', '-format=json')) as { members: SerfMember[] }).members;
}
