// Benchmark backend: Debian's nginx (installed into .tools by scripts/install-interop.sh), the same for every path measured.
// One master and ONE worker process: the machine has 2 cores, and wrk plus the proxies under test need the rest.
// Non-daemon, config and pid in a temp dir, error log to stderr, access log off, a small fixed body on every path.
// Optionally GET /bulk answers with bulkBytes of zeros (a sparse file, sent with sendfile): a bulk test that needs no
// half-close, which Consul's built-in proxy does not support (see bench/consul-anchor.ts).

import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const NGINX = join(ROOT, '.tools', 'bin', 'nginx');
/** The same body as bench/backend-server.ts serves, so the two backends are interchangeable. */
export const BODY = 'hello from the backend\n';

export interface NginxBackend {
  /** The nginx master's pid. */
  pid: number;
  /** Master and worker pids (the worker does the serving), for CPU/RSS sampling. */
  pids(): number[];
  url: string;
  stop(): Promise<void>;
}

const live = new Set<() => void>();
process.once('exit', () => { for (const kill of live) kill(); });

/** Spawn with the kernel's parent-death signal set (setpriv execs, so the pid is nginx's own) where setpriv exists. */
function spawnTied(cmd: string, args: string[]) {
  const tie = existsSync('/usr/bin/setpriv');
  return spawn(tie ? '/usr/bin/setpriv' : cmd, tie ? ['--pdeathsig', 'SIGTERM', '--', cmd, ...args] : args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function get(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', agent: false, timeout: 1000 }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export async function startNginx(host: string, port: number, opts: { bulkBytes?: number; h2cPort?: number } = {}): Promise<NginxBackend> {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: run scripts/install-interop.sh`);
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-nginx-'));
  if (opts.bulkBytes) {
    // The worker drops to an unprivileged user when nginx starts as root: it must be able to read the file.
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'www'), { mode: 0o755 });
    writeFileSync(join(dir, 'www', 'bulk'), '', { mode: 0o644 });
    truncateSync(join(dir, 'www', 'bulk'), opts.bulkBytes);
  }
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, `# written by bench/nginx-backend.ts
worker_processes 1;
error_log stderr warn;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_requests 100000;
  keepalive_timeout 60s;
  sendfile on;
  tcp_nopush on;
  server {
    listen ${host}:${port};${opts.h2cPort ? `
    # HTTP/2 without TLS (prior knowledge), for the HTTP/2 rows.
    listen ${host}:${opts.h2cPort} http2;` : ''}
    location / {
      default_type text/plain;
      return 200 ${JSON.stringify(BODY)};
    }
    location = /bulk {
      root ${join(dir, 'www')};
      default_type application/octet-stream;
    }
  }
}
`);
  const proc = spawnTied(NGINX, ['-p', `${dir}/`, '-c', conf, '-e', 'stderr', '-g', 'daemon off;']);
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => { err = (err + c).slice(-4000); });
  let exited = false;
  const exitedP = new Promise<void>((r) => proc.once('exit', () => { exited = true; r(); }));
  const kill = () => {
    if (!exited) {
      for (const p of children(proc.pid!)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  live.add(kill);
  proc.unref();
  (proc.stderr as unknown as { unref(): void }).unref();

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) { kill(); live.delete(kill); throw new Error(`nginx exited at start: ${err.trim()}`); }
    try {
      if ((await get(host, port)) === 200) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) { kill(); live.delete(kill); throw new Error(`nginx did not answer on ${host}:${port}: ${err.trim()}`); }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    pid: proc.pid!,
    pids: () => (exited ? [] : [proc.pid!, ...children(proc.pid!)]),
    url: `http://${host}:${port}/`,
    async stop() {
      if (!exited) {
        const workers = children(proc.pid!);
        proc.kill('SIGTERM'); // nginx: fast shutdown, the master stops its workers
        const t = setTimeout(() => { for (const p of [proc.pid!, ...workers]) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }, 5000);
        await exitedP;
        clearTimeout(t);
      }
      kill();
      live.delete(kill);
    },
  };
}
