// Anti-entropy from the local catalog into Consul: each local service and sidecar registered on the Consul agent with a TTL check carrying its local health; removed when it goes, re-registered when Consul lost it.

import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog-store.js';
import type { HealthStatus, ServiceRecord } from '../../model/catalog-types.js';
import { CoalescingRunner } from '../../lib/coalescing-runner.js';
import type { ConsulHttp } from './consul-http.js';
import { META_OWNER } from './consul-instances.js';

const META_HASH = 'nodemesh-hash';
/** Consul's TTL check per registration; refreshed well within it. */
const TTL = '30s';
const SYNC_EVERY_MS = 10_000;

const checkId = (serviceId: string) => `nodemesh:${serviceId}`;
const RANK: Record<HealthStatus, number> = { passing: 0, warning: 1, critical: 2, maintenance: 3 };

interface ConsulAgentService { ID: string; Meta?: Record<string, string> }

export class ConsulRegistrations {
  private readonly runner = new CoalescingRunner(() => this.sync(), () => this.stopped);
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private stopped = false;
  /** Last status written per check, so unchanged ones are refreshed only by the periodic pass. */
  private readonly sent = new Map<string, string>();
  private lastFullPass = 0;

  constructor(
    private readonly http: ConsulHttp,
    private readonly catalog: Catalog,
    private readonly localNode: string,
    private readonly log: Logger,
    private readonly onError: (e: Error) => void,
    private readonly onOk: () => void,
  ) {
    this.unsubscribe = catalog.feed.subscribe(() => void this.runner.run());
    this.timer = setInterval(() => { this.lastFullPass = 0; void this.runner.run(); }, SYNC_EVERY_MS);
    this.timer.unref();
  }

  /** One pass now (resolves when it is done). */
  syncNow(): Promise<void> {
    this.lastFullPass = 0;
    return this.runner.run();
  }

  private local(): ServiceRecord[] {
    return [...(this.catalog.getNode(this.localNode)?.services.values() ?? [])];
  }

  /** The service's health here: the worst of its checks (node checks included), passing when it has none. */
  private status(s: ServiceRecord): { status: HealthStatus; output: string } {
    const node = this.catalog.getNode(this.localNode);
    if (!node) return { status: 'critical', output: 'node not in the catalog' };
    let worst: HealthStatus = 'passing';
    const notes: string[] = [];
    for (const c of this.catalog.checksForInstance(node, s.ID)) {
      if (RANK[c.Status] > RANK[worst]) worst = c.Status;
      if (c.Status !== 'passing') notes.push(`${c.Name}: ${c.Status}`);
    }
    // A TTL check takes passing, warning or critical; maintenance counts as critical.
    return { status: worst === 'maintenance' ? 'critical' : worst, output: notes.length ? notes.join('; ') : 'all nodemesh checks passing' };
  }

  private payload(s: ServiceRecord): Record<string, unknown> {
    const nodeAddress = this.catalog.getNode(this.localNode)?.info.Address ?? '';
    const body: Record<string, unknown> = {
      ID: s.ID, Name: s.Service, Tags: s.Tags, Port: s.Port,
      // A sidecar's public listener binds the agent's address, whatever the registration said.
      Address: s.Kind === 'connect-proxy' ? nodeAddress : (s.Address || nodeAddress),
      Meta: { ...s.Meta, [META_OWNER]: this.localNode },
      EnableTagOverride: s.EnableTagOverride,
      ...(s.Weights ? { Weights: s.Weights } : {}),
      ...(s.Kind ? { Kind: s.Kind } : {}),
      ...(s.Proxy ? { Proxy: {
        DestinationServiceName: s.Proxy.DestinationServiceName, DestinationServiceID: s.Proxy.DestinationServiceID,
        LocalServiceAddress: s.Proxy.LocalServiceAddress, LocalServicePort: s.Proxy.LocalServicePort,
        Upstreams: (s.Proxy.Upstreams ?? []).map((u) => ({ DestinationType: u.DestinationType, DestinationName: u.DestinationName, LocalBindAddress: u.LocalBindAddress, LocalBindPort: u.LocalBindPort })),
      } } : {}),
      ...(s.Connect?.Native ? { Connect: { Native: true } } : {}),
    };
    const hash = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 16);
    (body.Meta as Record<string, string>)[META_HASH] = hash;
    return body;
  }

  private async sync(): Promise<void> {
    try {
      const desired = new Map(this.local().map((s) => [s.ID, s]));
      const have = (await this.http.get<Record<string, ConsulAgentService>>('/agent/services', { filter: `Meta["${META_OWNER}"] == "${this.localNode}"` })).body ?? {};
      const full = Date.now() - this.lastFullPass >= SYNC_EVERY_MS - 500;
      for (const [id, s] of desired) {
        const p = this.payload(s);
        const { status, output } = this.status(s);
        const fresh = have[id]?.Meta?.[META_HASH] !== (p.Meta as Record<string, string>)[META_HASH];
        if (fresh) {
          await this.http.put('/agent/service/register', { ...p, Check: { CheckID: checkId(id), Name: 'nodemesh agent health', TTL, Status: status, Notes: `health of ${id} as nodemesh agent ${this.localNode} sees it` } });
          this.log.info({ service: id, consul: this.http.address }, have[id] ? 'service re-registered in consul' : 'service registered in consul');
        }
        const key = `${status}\0${output}`;
        if (fresh || full || this.sent.get(id) !== key) {
          await this.http.put(`/agent/check/update/${encodeURIComponent(checkId(id))}`, { Status: status, Output: output });
          this.sent.set(id, key);
        }
      }
      for (const id of Object.keys(have)) {
        if (desired.has(id)) continue;
        await this.http.put(`/agent/service/deregister/${encodeURIComponent(id)}`);
        this.sent.delete(id);
        this.log.info({ service: id, consul: this.http.address }, 'service deregistered from consul');
      }
      if (full) this.lastFullPass = Date.now();
      this.onOk();
    } catch (e) {
      if (!this.stopped) this.onError(e as Error);
    }
  }

  /** Stops syncing and removes this agent's registrations from Consul (best effort: Consul may be gone). */
  async stop(deregister: boolean): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.unsubscribe();
    await this.runner.current?.catch(() => undefined);
    if (!deregister) return;
    for (const s of this.local()) {
      await this.http.put(`/agent/service/deregister/${encodeURIComponent(s.ID)}`).catch(() => undefined);
    }
  }
}
