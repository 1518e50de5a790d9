// Transparent capture: a listener per mesh service for connections to its virtual IP, and the nftables rules that bring them there.

import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import type { VirtualIps } from '../../catalog/virtual-ips.js';
import { NodemeshError } from '../../lib/errors.js';
import type { ServiceRecord } from '../../model/catalog-types.js';
import type { UpstreamDeclarer, UpstreamSpec } from '../outbound/outbound.js';
import { captureRuleset, removalRuleset, type CapturePlan } from './capture-rules.js';

export interface CaptureSettings {
  mode: 'strict' | 'permissive';
  /** Transparent listeners take ports from here up (one per mesh service, kept while the service exists). */
  portBase: number;
  excludeOutboundPorts: number[];
  /** Workload ports left unguarded (reachable without the mesh). */
  excludeInboundPorts: number[];
}

/** At most this many mesh services get a transparent listener (and so a port above portBase). */
const MAX_SERVICES = 1000;

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

  constructor(private readonly vips: VirtualIps, private readonly s: CaptureSettings, private readonly log: Logger, private readonly run = nft) {}

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
      out.push({ bindAddress: '0.0.0.0', bindPort: port, destination: name, lb: 'round_robin', connectTimeoutMs: 5000, declarers, protocol: protocolOf(name) });
    }
    return out;
  }

  /** Installs the rules for the transparent listeners now open and the local workloads to guard; unchanged rules are not re-applied. */
  async apply(openPorts: Set<number>, local: ServiceRecord[], nodeAddress: string): Promise<void> {
    const redirects = [...this.ports].filter(([, port]) => openPorts.has(port)).map(([name, port]) => ({ vip: this.vips.of(name)!, port })).filter((r) => r.vip);
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

  /** Removes every rule capture installed (on leave and stop). */
  async remove(): Promise<void> {
    if (!this.applied) return;
    this.applied = '';
    await this.run(removalRuleset()).catch((e: Error) => this.log.warn({ err: e.message }, 'transparent capture rules could not be removed'));
    this.log.info('transparent capture rules removed');
  }
}
