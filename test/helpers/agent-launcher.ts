// The one way tests, chaos runs, the soak and the benchmarks start `nodemesh agent` as a child process: spawned from the built CLI, tied to its parent, ready when it logs its addresses.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'bin', 'nodemesh.js');

export interface LaunchOptions {
  env?: Record<string, string>;
  /** Flags for node itself (e.g. --cpu-prof), before the CLI. */
  nodeFlags?: string[];
  /** How long the agent may take to log that it runs (default 20 s). */
  timeoutMs?: number;
  /** Copy the agent's stdout to this process's stderr as it comes. */
  echo?: boolean;
  /** Output kept for output() and error messages (default 64 KiB, the most recent). */
  keepBytes?: number;
  /** Run the agent inside this network namespace (`ip netns exec`), one the test made itself. */
  netns?: string;
}

export interface LaunchedAgent {
  proc: ChildProcess;
  /** The HTTP API's port and base URL (as the agent logged them). */
  port: number;
  url: string;
  /** The gossip address (host:port) it logged, when it runs the gossip backend. */
  gossip?: string;
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => { for (const p of live) p.kill('SIGKILL'); });

/**
 * Spawns `node [nodeFlags] bin/nodemesh.js agent --log-json …args` and resolves when the agent logs "nodemesh agent
 * running" with its addresses. With setpriv on the machine the child dies with this process (a test killed hard takes
 * its agents with it); either way every launched agent is killed when this process exits. DNS takes a free port unless
 * the args name one (agents of parallel tests would all want 8600).
 */
export async function launchAgent(args: string[], opts: LaunchOptions = {}): Promise<LaunchedAgent> {
  const dns = args.includes('--dns-port') ? [] : ['--dns-port', '0'];
  const argv = [...(opts.netns ? ['ip', 'netns', 'exec', opts.netns] : []), process.execPath, ...(opts.nodeFlags ?? []), CLI, 'agent', '--log-json', ...dns, ...args];
  const tie = existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'SIGKILL', '--'] : [];
  const [cmd, ...rest] = [...tie, ...argv];
  const proc = spawn(cmd, rest, { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  const keep = opts.keepBytes ?? 65_536;
  let out = '';
  const add = (c: Buffer) => { out = (out + c.toString()).slice(-keep); };
  proc.stdout!.on('data', add);
  proc.stderr!.on('data', add);
  if (opts.echo) proc.stdout!.pipe(process.stderr);
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, sig) => {
    live.delete(proc);
    resolve(code ?? sig ?? -1);
  }));
  const ready = await new Promise<{ port: number; host: string; gossip?: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start within ${(opts.timeoutMs ?? 20_000) / 1000} s:\n${out}`)), opts.timeoutMs ?? 20_000);
    let seen = '';
    const look = (c: Buffer) => {
      seen += c.toString();
      for (const line of seen.split('\n').slice(0, -1)) {
        if (!line.includes('nodemesh agent running')) continue;
        const http = /"http":"([^"]*):(\d+)"/.exec(line);
        if (!http) continue;
        clearTimeout(timer);
        proc.stdout!.off('data', look);
        resolve({ host: http[1], port: Number(http[2]), gossip: /"gossip":"([^"]+)"/.exec(line)?.[1] });
        return;
      }
      seen = seen.slice(seen.lastIndexOf('\n') + 1);
    };
    proc.stdout!.on('data', look);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`agent exited (${code}) before starting:\n${out}`)); });
  });
  const host = ready.host === '0.0.0.0' || ready.host === '::' ? '127.0.0.1' : ready.host.includes(':') ? `[${ready.host}]` : ready.host;
  return { proc, port: ready.port, url: `http://${host}:${ready.port}`, gossip: ready.gossip, output: () => out, exited };
}
