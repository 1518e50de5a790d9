// The public listener's TLS front under fuzz: garbage, mutated and truncated ClientHellos, and slow trickles against a
// live agent; afterwards every such connection must be gone and a real mTLS client must still get in.

import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { startAgent } from '../../agent/agent.js';
import { defaultConfig } from '../../config/agent-config.js';
import { Rng, mutateBytes } from './mutate.js';

const HOST = '127.0.77.1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The first flight a real TLS client sends (its ClientHello), captured without a network. */
function clientHello(alpn: string[]): Promise<Buffer> {
  return new Promise((resolve) => {
    const sink = new Duplex({ read() {}, write(chunk: Buffer, _e, cb) { resolve(Buffer.from(chunk)); cb(); } });
    const t = tlsConnect({ socket: sink as unknown as Socket, ALPNProtocols: alpn, rejectUnauthorized: false });
    t.on('error', () => undefined);
    setTimeout(() => t.destroy(), 100);
  });
}

export interface TlsFrontResult { cases: number; findings: string[]; perSecond: number; heapDeltaMb: number }

export async function fuzzTlsFront(cases: number, seed: number, heapMb: () => number): Promise<TlsFrontResult> {
  const agent = await startAgent({ ...defaultConfig(), dev: true, node: 'fuzz-tls', bind: HOST, client: '127.0.0.1', httpPort: 0, serfLanPort: 0, dnsPort: 0, logLevel: 'error', drainTimeoutMs: 500 }, pino({ level: 'silent' }));
  const findings: string[] = [];
  try {
    const reg = await fetch(`http://127.0.0.1:${agent.http.port}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify({ Name: 'target', Address: HOST, Port: 1, Connect: { SidecarService: {} } }) });
    if (!reg.ok) throw new Error(await reg.text());
    let port = 0;
    for (let i = 0; i < 100 && !port; i++) {
      port = Number(agent.dataPlane.listeners().inbound[0]?.split(':').pop() ?? 0);
      if (!port) await sleep(50);
    }
    const seeds = [await clientHello(['nodemesh-tunnel/1']), await clientHello(['h2']), await clientHello([])];
    const rng = new Rng(seed ^ createHash('sha1').update('tls-front').digest().readUInt32BE(0));
    const heap0 = heapMb();
    const t0 = Date.now();
    let slow = 0;
    const one = () => new Promise<void>((resolve) => {
      // Many source addresses, so 100 k short connections do not run out of ports in TIME_WAIT.
      const s = connect({ host: HOST, port, localAddress: `127.0.78.${1 + rng.int(250)}` });
      s.on('error', () => undefined);
      s.once('close', () => resolve());
      s.once('connect', () => {
        const mode = rng.int(100);
        if (mode < 2 && slow < 32) {
          // Slowloris: a ClientHello a byte at a time, then silence; the listener's handshake deadline must end it.
          slow++;
          const hello = rng.pick(seeds);
          let i = 0;
          const tick = setInterval(() => { if (i < 20 && !s.destroyed) s.write(hello.subarray(i, ++i)); else clearInterval(tick); }, 50);
          s.once('close', () => { clearInterval(tick); slow--; });
          setTimeout(() => { clearInterval(tick); resolve(); }, 1500); // the case is done; the socket stays for the check
          return;
        }
        const data = mode < 40 ? rng.pick(seeds).subarray(0, rng.int(rng.pick(seeds).length)) : mutateBytes(rng, seeds);
        s.write(data);
        // Half-close (the server then owes a close) or vanish; either way the client is gone within 20 ms.
        if (rng.int(2)) s.end();
        setTimeout(() => s.destroy(), rng.int(20));
      });
      setTimeout(() => { s.destroy(); resolve(); }, 3000);
    });
    const CONCURRENCY = 32;
    let started = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (started < cases) {
        started++;
        await one();
      }
    }));
    const secs = (Date.now() - t0) / 1000;
    // Every hostile connection must be gone once the handshake deadline (5 s) has passed.
    const deadline = Date.now() + 9000;
    while (agent.dataPlane.openConnections() > 0 && Date.now() < deadline) await sleep(100);
    const left = agent.dataPlane.openConnections();
    if (left > 0) findings.push(`${left} connection(s) still open 9 s after the last hostile one`);
    // A real client still gets in: a leaf of the agent's own CA, verified both ways.
    const leaf = await agent.leaves.get('web');
    const ok = await new Promise<string>((resolve) => {
      const t = tlsConnect({ host: HOST, port, cert: leaf.CertPEM, key: leaf.PrivateKeyPEM, ca: agent.trust.pems(), checkServerIdentity: () => undefined }, () => { resolve(t.authorized ? 'ok' : `unauthorized: ${t.authorizationError}`); t.destroy(); });
      t.on('error', (e) => resolve(e.message));
    });
    if (ok !== 'ok') findings.push(`a valid mTLS client could not connect afterwards: ${ok}`);
    const ready = await fetch(`http://127.0.0.1:${agent.http.port}/v1/agent/ready`);
    if (ready.status !== 200) findings.push(`agent not ready afterwards: ${await ready.text()}`);
    return { cases, findings, perSecond: cases / Math.max(secs, 0.001), heapDeltaMb: heapMb() - heap0 };
  } finally {
    await agent.stop();
  }
}
