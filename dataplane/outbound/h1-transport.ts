// Requests to instances over HTTP/1.1: a keep-alive pool of tunnel streams per (caller, service, instance), connection limits and a deadline per exchange.

import { Agent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { InstanceGates } from '../balance/instance-gate.js';
import type { InstancePicker } from '../balance/instance-picker.js';
import type { Instance } from '../balance/service-instances.js';
import type { CallPolicy, Target } from '../http/discovery-chain.js';
import type { OutgoingRequest, UpstreamAnswer } from '../http/l7-exchange.js';
import { ProxyAnswer } from '../http/proxy-answer.js';
import type { Endpoint, TunnelPool } from '../tunnel/tunnel-pool.js';
import type { Transport } from './l7-pipeline.js';

/** HTTP/1.1 connections per instance and caller unless the resolver's Nodemesh.Limits.MaxConnections says otherwise. */
const DEFAULT_MAX_CONNECTIONS = 512;

export class H1Transport implements Transport {
  private readonly agents = new Map<string, Agent>();

  constructor(private readonly tunnels: TunnelPool, private readonly gates: InstanceGates, private readonly picker: InstancePicker) {}

  /** A keep-alive pool of tunnel streams per (source, destination service, instance). */
  private agentFor(source: string, service: string, ep: Endpoint, connectTimeoutMs: number, maxConnections = 0): Agent {
    const k = `${source}\0${service}\0${ep.host}:${ep.port}`;
    let a = this.agents.get(k);
    if (a) a.maxSockets = maxConnections || DEFAULT_MAX_CONNECTIONS;
    if (!a) {
      a = new Agent({ keepAlive: true, maxSockets: maxConnections || DEFAULT_MAX_CONNECTIONS, maxFreeSockets: 64, scheduling: 'lifo' });
      const tunnels = this.tunnels;
      // node:http asks for a socket; a tunnel stream (or an mTLS socket to a peer without the tunnel) is one.
      (a as unknown as { createConnection: unknown }).createConnection = (_o: unknown, cb: (e: Error | null, s?: Duplex) => void) => {
        tunnels.open(ep, source, service, connectTimeoutMs).then((s) => cb(null, s), (e: Error) => cb(e));
        return undefined;
      };
      this.agents.set(k, a);
    }
    return a;
  }

  /** One attempt: resolves with the answer's head, rejects on connect failure; past the deadline, 504 (or the body is cut). */
  async send(inst: Instance, target: Target, source: string, req: OutgoingRequest, timeoutMs: number, policy?: CallPolicy): Promise<UpstreamAnswer> {
    const release = await this.gates.acquire(inst.key, policy?.maxConnections ?? 0, policy?.maxPendingRequests ?? 0, timeoutMs);
    return new Promise((resolve, reject) => {
      const agent = this.agentFor(source, target.service, inst.endpoint, target.connectTimeoutMs, policy?.maxConnections);
      const r = httpRequest({ agent, method: req.method, path: req.path, headers: req.headers as OutgoingHttpHeaders });
      r.once('close', release);
      r.once('close', this.picker.started(inst));
      const timer = setTimeout(() => {
        r.destroy();
        reject(new ProxyAnswer(504, 'upstream request timeout', 'UPSTREAM_TIMEOUT'));
      }, timeoutMs);
      r.once('response', (up: IncomingMessage) => {
        // The deadline covers the whole exchange: a body that stalls past it is cut.
        up.once('end', () => clearTimeout(timer));
        up.once('close', () => clearTimeout(timer));
        const status = up.statusCode ?? 502;
        resolve({ status, effective: status, headers: up.headers, body: up, endAfterHeaders: false, trailers: () => undefined, discard: () => up.resume() });
      });
      r.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      if (Buffer.isBuffer(req.body)) r.end(req.body);
      else req.body.pipe(r);
    });
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
