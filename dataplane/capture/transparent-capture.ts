// Transparent capture: a listener per mesh service for connections to its virtual IP, and the nftables rules that bring them there.

import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { VirtualIps } from '../../catalog/virtual-ips.js';
import { NodemeshError } from '../../lib/errors.js';
import type { ServiceRecord } from '../../model/catalog-types.js';
import type { UpstreamDeclarer, UpstreamSpec } from '../outbound/outbound.js';
import { CAPTURE_TABLE, captureRuleset, removalRuleset, type CapturePlan } from './capture-rules.js';

export interface CaptureSettings {
  mode: 'strict' | 'permissive';
  /** Transparent listeners take ports from here up (one per mesh service, kept while the service exists). */
  portBase: number;
  excludeOutboundPorts: number[];
  /** Workload ports left unguarded (reachable without the mesh). */
  excludeInboundPorts: number[];
}

/** Transparent listeners listen on every address: redirected connections arrive on whichever the packet came to. */
const LISTEN_ADDRESS = '0.0.0.0';

/** At most this many mesh services get a transparent listener (and so a port above portBase). */
const MAX_SERVICES = 1000;

/** `nft -j list chain inet nodemesh forward`: the guard rules' counters, as nft reports them. */
function listGuards(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('nft', ['-j', 'list', 'chain', 'inet', CAPTURE_TABLE, 'forward'], { timeout: 5000 }, (e, out) => (e ? reject(e) : resolve(out)));
  });
}

/** Runs `nft -f -` with the script on stdin; rejects with what nft said. */
function nft(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], { timeout: 10_000 }, (e, _out, err) => {
      if (e) reject(new NodemeshError('CAPTURE_APPLY_FAILED', `nft refused the capture rules: ${(err || e.message).trim()}`, 500));
      else resolve();
    });
    child.stdin?.end(script);
  });
}

export class TransparentCapture {
  /** Mesh service (folded) → its listener port; a port stays with its service until the service goes. */
  private readonly ports = new Map<string, number>();
  private applied = '';
  private failedOnce = false;

  constructor(private readonly vips: VirtualIps, private readonly s: CaptureSettings, private readonly log: Logger, registry?: Registry, private readonly run = nft) {
    if (!registry) return;
    const counts = () => this.bypassCounts();
    new Counter({
      name: 'nodemesh_capture_bypass_packets_total', registers: [registry], labelNames: ['address', 'port', 'mode'],
      help: 'Packets to a guarded workload that did not come through the mesh (read from the capture table at scrape): let through in permissive mode, dropped in strict.',
      async collect() {
        this.reset();
        for (const c of await counts()) this.inc({ address: c.address, port: String(c.port), mode: c.mode }, c.packets);
      },
    });
  }

  /**
   * The listeners capture wants: one per mesh service with a virtual IP, on any address (the input rule admits only
   * redirected connections), attributed to the calling workload by source address. `taken`: ports other listeners hold.
   */
  specs(local: ServiceRecord[], nodeAddress: string, protocolOf: (service: string) => string, taken: Set<number>): UpstreamSpec[] {
    const byId = new Map(local.map((s) => [s.ID, s]));
    const declarers: UpstreamDeclarer[] = local.filter((p) => p.Kind === 'connect-proxy' && p.Proxy?.DestinationServiceName).map((p) => {
      const parent = p.Proxy!.DestinationServiceID ? byId.get(p.Proxy!.DestinationServiceID) : undefined;
      return { proxyId: p.ID, sourceService: p.Proxy!.DestinationServiceName, address: parent?.Address || p.Address || nodeAddress };
    });
    const services = this.vips.services();
    for (const name of [...this.ports.keys()]) if (!services.has(name)) this.ports.delete(name);
    const used = new Set([...this.ports.values(), ...taken]);
    const out: UpstreamSpec[] = [];
    for (const name of [...services.keys()].sort()) {
      let port = this.ports.get(name);
      if (port === undefined) {
        if (this.ports.size >= MAX_SERVICES) continue;
        port = this.s.portBase;
        while (used.has(port)) port++;
        used.add(port);
        this.ports.set(name, port);
      }
      out.push({ bindAddress: LISTEN_ADDRESS, bindPort: port, destination: name, lb: 'round_robin', connectTimeoutMs: 5000, declarers, protocol: protocolOf(name) });
    }
    return out;
  }

  /**
   * Installs the rules for the transparent listeners now open (`open`: the data plane's listener keys, address:port)
   * and the local workloads to guard; unchanged rules are not re-applied.
   */
  async apply(open: Set<string>, local: ServiceRecord[], nodeAddress: string): Promise<void> {
    const redirects = [...this.ports].filter(([, port]) => open.has(`${LISTEN_ADDRESS}:${port}`)).map(([name, port]) => ({ vip: this.vips.of(name)!, port })).filter((r) => r.vip);
    const byId = new Map(local.map((s) => [s.ID, s]));
    const guarded = local.filter((p) => p.Kind === 'connect-proxy' && p.Proxy?.DestinationServiceName).flatMap((p) => {
      const parent = p.Proxy!.DestinationServiceID ? byId.get(p.Proxy!.DestinationServiceID) : undefined;
      const address = p.Proxy!.LocalServiceAddress || parent?.Address || nodeAddress;
      const port = p.Proxy!.LocalServicePort || parent?.Port || 0;
      // Loopback apps are out of reach from elsewhere already; excluded ports are the operator's choice.
      return port > 0 && !address.startsWith('127.') && !this.s.excludeInboundPorts.includes(port) ? [{ address, port }] : [];
    });
    const plan: CapturePlan = { redirects, guarded, mode: this.s.mode, excludeOutboundPorts: this.s.excludeOutboundPorts };
    const script = captureRuleset(plan);
    if (script === this.applied) return;
    try {
      await this.run(script);
      this.applied = script;
      this.failedOnce = false;
      this.log.info({ redirects: redirects.length, guarded: guarded.length, mode: this.s.mode }, 'transparent capture rules installed');
    } catch (e) {
      if (!this.failedOnce) this.log.error({ err: (e as Error).message, code: 'CAPTURE_APPLY_FAILED' }, 'transparent capture rules not installed: connections to virtual IPs are not captured');
      this.failedOnce = true;
    }
  }

  /**
   * Connections that reached a guarded workload past the mesh, per workload: packets the forward guard counted (in
   * permissive mode let through, in strict mode dropped). Empty when no rules are installed or nft cannot be read.
   */
  async bypassCounts(list = listGuards): Promise<{ address: string; port: number; packets: number; mode: string }[]> {
    if (!this.applied) return [];
    try {
      const doc = JSON.parse(await list()) as { nftables?: { rule?: { comment?: string; expr?: Record<string, { right?: unknown; packets?: number }>[] } }[] };
      return (doc.nftables ?? []).flatMap(({ rule }) => {
        if (!rule?.expr) return [];
        const matches = rule.expr.filter((x) => x.match).map((x) => x.match.right);
        const counter = rule.expr.find((x) => x.counter)?.counter;
        const [address, port] = matches;
        return typeof address === 'string' && typeof port === 'number' && counter ? [{ address, port, packets: counter.packets ?? 0, mode: rule.comment ?? '' }] : [];
      });
    } catch {
      return [];
    }
  }

  /** Removes every rule capture installed (on leave and stop). */
  async remove(): Promise<void> {
    if (!this.applied) return;
    this.applied = '';
    await this.run(removalRuleset()).catch((e: Error) => this.log.warn({ err: e.message }, 'transparent capture rules could not be removed'));
    this.log.info('transparent capture rules removed');
  }
}
