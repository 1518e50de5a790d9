// The benchmark's second anchor: what an operator without a mesh would deploy — two HAProxy processes (Debian's
// package, one thread each) as a hand-built mTLS pair, certificates from a CA made here:
//   wrk → client HAProxy (plain) → mTLS → server HAProxy → nginx
// once in TCP mode (bytes, as nodemesh's L4 path) and once in HTTP mode (per request, as nodemesh's L7 path).
// Addresses, given bindBase B: client B.1, server B.2. Nothing binds 0.0.0.0.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../identity/ca/certificate-authority.js';
import { freePort } from '../test/helpers/free-port.js';

export const HAPROXY = '/usr/sbin/haproxy';

export interface HaproxyPath {
  /** URL wrk hits for the TCP-mode pair (bytes). */
  http: string;
  /** URL for the HTTP-mode pair (per request). */
  httpMode: string;
  pids: () => number[];
  stop(): Promise<void>;
}

function up(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

export async function startHaproxyPath(opts: { backendHost: string; backendPort: number; bindBase: string }): Promise<HaproxyPath> {
  if (!existsSync(HAPROXY)) throw new Error(`${HAPROXY} is missing: run scripts/install-interop.sh`);
  const ip = { client: `${opts.bindBase}.1`, server: `${opts.bindBase}.2` };
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-haproxy-anchor-'));
  // One root and a leaf per side, as `nodemesh ca init` and a mesh's CA would make them; each side checks the other.
  const ca = await CertificateAuthority.open({ dataDir: dir });
  const pem = (name: string, leaf: { certPem: string; keyPem: string }) => {
    const p = join(dir, `${name}.pem`);
    writeFileSync(p, `${leaf.certPem.trim()}\n${leaf.keyPem.trim()}\n`, { mode: 0o600 });
    return p;
  };
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, ca.rootPems[0]);
  const clientPem = pem('client', await ca.signService('dc1', 'hap-client', 24 * 3_600_000));
  const serverPem = pem('server', await ca.signService('dc1', 'hap-server', 24 * 3_600_000));
  const taken = new Set<number>();
  const port = {
    tcp: await freePort(ip.client, taken), http: await freePort(ip.client, taken),
    mtlsTcp: await freePort(ip.server, taken), mtlsHttp: await freePort(ip.server, taken),
  };
  const global = 'global\n  nbthread 1\n  maxconn 4096\n  log stderr format raw local0 err\ndefaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n';
  const tls = (pemFile: string) => `ssl crt ${pemFile} ca-file ${caFile} verify required`;
  const client = `${global}
frontend tcp_in
  mode tcp
  bind ${ip.client}:${port.tcp}
  default_backend tcp_out
backend tcp_out
  mode tcp
  server s ${ip.server}:${port.mtlsTcp} ${tls(clientPem)}
frontend http_in
  mode http
  bind ${ip.client}:${port.http}
  default_backend http_out
backend http_out
  mode http
  http-reuse always
  server s ${ip.server}:${port.mtlsHttp} ${tls(clientPem)}
`;
  const server = `${global}
frontend tcp_in
  mode tcp
  bind ${ip.server}:${port.mtlsTcp} ${tls(serverPem)}
  default_backend app_tcp
backend app_tcp
  mode tcp
  server app ${opts.backendHost}:${opts.backendPort}
frontend http_in
  mode http
  bind ${ip.server}:${port.mtlsHttp} ${tls(serverPem)}
  default_backend app_http
backend app_http
  mode http
  http-reuse always
  server app ${opts.backendHost}:${opts.backendPort}
`;
  const procs: ChildProcess[] = [];
  for (const [name, cfg] of [['client', client], ['server', server]] as const) {
    const file = join(dir, `${name}.cfg`);
    writeFileSync(file, cfg);
    const tie = existsSync('/usr/bin/setpriv');
    const proc = spawn(tie ? '/usr/bin/setpriv' : HAPROXY, tie ? ['--pdeathsig', 'SIGKILL', '--', HAPROXY, '-db', '-f', file] : ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (c) => { err = (err + c).slice(-4000); });
    proc.once('exit', (code) => { if (code) process.stderr.write(`bench: haproxy ${name} exited ${code}: ${err}\n`); });
    procs.push(proc);
  }
  const deadline = Date.now() + 10_000;
  while (!(await up(ip.client, port.tcp) && await up(ip.server, port.mtlsTcp))) {
    if (Date.now() > deadline) throw new Error('haproxy did not start within 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    http: `http://${ip.client}:${port.tcp}/`,
    httpMode: `http://${ip.client}:${port.http}/`,
    pids: () => procs.map((p) => p.pid!).filter(Boolean),
    stop: async () => {
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => (p.exitCode !== null ? undefined : new Promise((r) => p.once('exit', r)))));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
