// Chaos load: HTTP workloads that say who served, steady keep-alive load through an upstream listener with every
// request's outcome kept, and an unauthorized caller that must never get a byte from a workload.

import { Agent, createServer, request, type Server } from 'node:http';
import { connect } from 'node:net';

export interface Workload { server: Server; ip: string; port: number; hits: number; close(): Promise<void> }

/** An HTTP app on its own loopback address answering its name. */
export async function workload(ip: string, name: string): Promise<Workload> {
  const w = { hits: 0 } as Workload;
  const server = createServer((_q, r) => { w.hits++; r.end(`${name}\n`); });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, ip, r));
  return Object.assign(w, {
    server, ip, port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  });
}

export interface Outcome { start: number; end: number; ok: boolean; by?: string; err?: string }

/** `clients` callers (keep-alive, or a connection per request) to an upstream listener, until stopped or `maxMs` has passed. */
export class SteadyLoad {
  readonly outcomes: Outcome[] = [];
  private running = true;
  private readonly agent: Agent;
  private readonly loops: Promise<void>[];

  /** `keepAlive` false: a new connection per request (so each one picks an instance afresh). */
  constructor(private readonly host: string, private readonly port: number, clients: number, maxMs = 10 * 60_000, keepAlive = true, private readonly timeoutMs = 5000) {
    this.agent = new Agent({ keepAlive, maxSockets: clients });
    const until = Date.now() + maxMs;
    this.loops = Array.from({ length: clients }, async () => {
      while (this.running && Date.now() < until) {
        const o = await this.once();
        this.outcomes.push(o);
        if (!o.ok) await new Promise((r) => setTimeout(r, 20));
      }
    });
  }

  private once(): Promise<Outcome> {
    const start = Date.now();
    return new Promise((resolve) => {
      const done = (ok: boolean, by?: string, err?: string) => resolve({ start, end: Date.now(), ok, by, err });
      const r = request({ host: this.host, port: this.port, localAddress: this.host, path: '/', agent: this.agent }, (res) => {
        let body = '';
        res.on('data', (c) => { body += c; });
        res.on('end', () => done(res.statusCode === 200, body.trim(), res.statusCode === 200 ? undefined : `status ${res.statusCode}`));
        res.on('error', (e) => done(false, undefined, e.message));
      });
      r.on('error', (e) => done(false, undefined, (e as NodeJS.ErrnoException).code ?? e.message));
      r.setTimeout(this.timeoutMs, () => r.destroy(new Error('timeout')));
      r.end();
    });
  }

  /** Counts over requests that started in [from, to). */
  stats(from = 0, to = Infinity): { sent: number; failed: number; by: Record<string, number>; errors: string[] } {
    const sel = this.outcomes.filter((o) => o.start >= from && o.start < to);
    const failed = sel.filter((o) => !o.ok);
    const by: Record<string, number> = {};
    for (const o of sel) if (o.ok && o.by) by[o.by] = (by[o.by] ?? 0) + 1;
    return { sent: sel.length, failed: failed.length, by, errors: [...new Set(failed.map((o) => o.err ?? '?'))].slice(0, 5) };
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.agent.destroy();
  }
}

/**
 * A caller with no intention allowing it: new connections in a loop from `from` to its upstream listener; any byte
 * back is a breach (the workloads always answer, so a byte means the mesh let it through).
 */
export class RogueCaller {
  attempts = 0;
  breaches = 0;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(from: string, port: number) {
    this.loop = (async () => {
      while (this.running) {
        this.attempts++;
        const got = await new Promise<number>((resolve) => {
          let n = 0;
          const s = connect({ host: from, port, localAddress: from }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
          s.on('data', (c) => { n += c.length; });
          s.on('close', () => resolve(n));
          s.on('error', () => undefined);
          s.setTimeout(2000, () => s.destroy());
        });
        if (got > 0) this.breaches++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
