// One probe of a TCP or HTTP check: dial or request once, classify the result as Consul does.

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { CheckDefinition, HealthStatus } from '../../model/catalog-types.js';

export interface ProbeResult { status: HealthStatus; output: string }

export const DEFAULT_OUTPUT_MAX = 4096;

export function truncateOutput(output: string, max = DEFAULT_OUTPUT_MAX): string {
  const buf = Buffer.from(output);
  if (buf.length <= max) return output;
  // Cut on a character boundary: step back while the first dropped byte continues a UTF-8 sequence.
  let cut = max;
  while (cut > 0 && (buf[cut] & 0xc0) === 0x80) cut--;
  return buf.subarray(0, cut).toString('utf8');
}

function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(addr);
  return { host: m?.[1] ?? addr, port: Number(m?.[2] ?? 0) };
}

/**
 * The local ends (address:port) of this agent's own TCP checks, so a listener of this agent can tell its own
 * connect-and-leave probe from anyone else's. Bounded: the oldest are dropped past OWN_PROBES_MAX.
 */
const ownProbes = new Set<string>();
const OWN_PROBES_MAX = 1024;

/** Whether a connection from `address:port` is one of this agent's own TCP checks (each is recognized once). */
export function isOwnTcpProbe(address: string | undefined, port: number | undefined): boolean {
  return ownProbes.delete(`${address}:${port}`);
}

export function probeTcp(def: CheckDefinition): Promise<ProbeResult> {
  const addr = def.TCP ?? '';
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const finish = (r: ProbeResult) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ status: 'critical', output: `dial tcp ${addr}: i/o timeout` }), def.Timeout ?? 10_000);
    sock.once('connect', () => {
      ownProbes.add(`${sock.localAddress}:${sock.localPort}`);
      if (ownProbes.size > OWN_PROBES_MAX) ownProbes.delete(ownProbes.values().next().value as string);
      finish({ status: 'passing', output: `TCP connect ${addr}: Success` });
    });
    sock.once('error', (e: NodeJS.ErrnoException) => finish({ status: 'critical', output: `dial tcp ${addr}: ${e.code ?? ''} ${e.message}`.trim() }));
  });
}

export function probeHttp(def: CheckDefinition): Promise<ProbeResult> {
  const url = new URL(def.HTTP ?? '');
  const method = def.Method || 'GET';
  const max = def.OutputMaxSize ?? DEFAULT_OUTPUT_MAX;
  const headers: Record<string, string | string[]> = {
    'User-Agent': 'Consul Health Check',
    Accept: 'text/plain, text/*, */*',
    ...(def.Header ?? {}),
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const req = send(url, { method, headers, rejectUnauthorized: !def.TLSSkipVerify, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < max) chunks.push(c);
        size += c.length;
      });
      res.on('end', () => {
        const code = res.statusCode ?? 0;
        const body = truncateOutput(Buffer.concat(chunks).toString('utf8'), max);
        const output = `HTTP ${method} ${url.href}: ${code} ${res.statusMessage ?? ''} Output: ${body}`;
        const status: HealthStatus = code >= 200 && code < 300 ? 'passing' : code === 429 ? 'warning' : 'critical';
        finish({ status, output: truncateOutput(output, max) });
      });
      res.on('error', (e) => finish({ status: 'critical', output: `HTTP ${method} ${url.href}: ${e.message}` }));
    });
    const timer = setTimeout(() => finish({ status: 'critical', output: `HTTP ${method} ${url.href}: request timed out after ${def.Timeout ?? 10_000}ms` }), def.Timeout ?? 10_000);
    req.on('error', (e: NodeJS.ErrnoException) => finish({ status: 'critical', output: `HTTP ${method} ${url.href}: ${e.code ?? ''} ${e.message}`.trim() }));
    req.end(def.Body ?? undefined);
  });
}
