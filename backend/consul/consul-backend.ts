// The Consul backend: trust roots, leaves, intentions and upstream instances from a Consul agent, local services registered there, and whether Consul answers (degraded while it does not).

import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog-store.js';
import { isNodemeshError, NodemeshError } from '../../lib/errors.js';
import { ConsulConfigEntries } from './consul-config-entries.js';
import { ConsulHttp } from './consul-http.js';
import { ConsulInstances } from './consul-instances.js';
import { ConsulIntentions } from './consul-intentions.js';
import { ConsulLeaves } from './consul-leaves.js';
import { ConsulRegistrations } from './consul-registrations.js';
import { ConsulTrust } from './consul-trust.js';
import type { AgentConfig } from '../../config/agent-config.js';
import type { MeshBackend } from '../mesh-backend.js';

export interface ConsulBackendOptions {
  address: string;
  token: string | undefined;
  catalog: Catalog;
  /** This agent's node name: owner of its registrations in Consul. */
  node: string;
  log: Logger;
  registry: Registry;
  /** How long start-up waits for Consul's first answers. */
  startTimeoutMs?: number;
}

export class ConsulBackend implements MeshBackend {
  readonly kind = 'consul' as const;
  /** Consul's CA has no node intermediates: nothing to bind to the catalog. */
  readonly bindsNodeIdentities = false;
  readonly http: ConsulHttp;
  readonly trust: ConsulTrust;
  readonly leaves: ConsulLeaves;
  readonly intentions: ConsulIntentions;
  /** Config entries (protocol, routing) as Consul holds them. */
  readonly entries: ConsulConfigEntries;
  private readonly instances: ConsulInstances;
  private readonly registrations: ConsulRegistrations;
  private readonly unsubscribe: () => void;
  private unreachableSince?: number;
  private lastError?: string;
  private readonly reachable: Gauge;

  private constructor(private readonly o: ConsulBackendOptions) {
    this.http = new ConsulHttp({ address: o.address, token: o.token });
    this.reachable = new Gauge({ name: 'nodemesh_consul_reachable', help: '1 while the Consul backend answers, 0 while the agent serves from its last known state', registers: [o.registry] });
    this.reachable.set(1);
    const onError = (e: Error) => this.failed(e);
    const onOk = () => this.answered();
    this.trust = new ConsulTrust(this.http, onError, onOk, (id) => o.log.warn({ activeRootId: id }, 'consul CA root rotated: new leaves follow as Consul re-signs them'));
    this.leaves = new ConsulLeaves(this.http, o.log, onError, onOk);
    this.intentions = new ConsulIntentions(this.http, 'deny', onError, onOk);
    this.entries = new ConsulConfigEntries(this.http, onError, onOk);
    this.instances = new ConsulInstances(this.http, o.catalog, o.node, onError, onOk);
    this.registrations = new ConsulRegistrations(this.http, o.catalog, o.node, o.log, onError, onOk);
    let last: string | undefined;
    const follow = () => {
      const want = ConsulInstances.destinationsOf(o.catalog, o.node);
      const key = [...want].sort().join('\0');
      if (key === last) return;
      last = key;
      this.instances.follow(want);
    };
    this.unsubscribe = o.catalog.feed.subscribe(follow);
    follow();
  }

  /** Connects to Consul and waits for its roots and intentions; fails with what to do if Consul does not answer. */
  static async start(o: ConsulBackendOptions): Promise<ConsulBackend> {
    const b = new ConsulBackend(o);
    const timeout = o.startTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.all([b.trust.ready, b.intentions.ready]),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new NodemeshError('CONSUL_UNREACHABLE',
            `no answer from Consul at ${b.http.address} within ${timeout / 1000} s${b.lastError ? ` (${b.lastError})` : ''}: start Consul with Connect enabled, or fix --consul-addr / CONSUL_HTTP_ADDR (and --consul-token)`, 1)), timeout);
        }),
      ]);
    } catch (e) {
      await b.stop(false);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    if (!b.trust.trustDomain) {
      await b.stop(false);
      throw new NodemeshError('CONSUL_NO_CA', `Consul at ${b.http.address} has no Connect CA: enable Connect on its servers (connect { enabled = true })`, 1);
    }
    await b.registrations.syncNow();
    o.log.info({ consul: b.http.address, trustDomain: b.trust.trustDomain, defaultIntentionPolicy: b.intentions.defaultPolicy() }, 'consul backend ready');
    return b;
  }

  private failed(e: Error): void {
    const unreachable = isNodemeshError(e) && e.code === 'CONSUL_UNREACHABLE';
    if (unreachable && this.unreachableSince === undefined) {
      this.unreachableSince = Date.now();
      this.reachable.set(0);
      this.o.log.warn({ consul: this.http.address, err: e.message }, 'consul unreachable: degraded, serving from the last known certificates, intentions and instances');
    } else if (!unreachable && e.message !== this.lastError) {
      this.o.log.warn({ consul: this.http.address, err: e.message }, 'consul call failed');
    }
    this.lastError = e.message;
  }

  private answered(): void {
    if (this.unreachableSince === undefined) return;
    this.o.log.info({ consul: this.http.address, downForMs: Date.now() - this.unreachableSince }, 'consul reachable again: catching up');
    this.unreachableSince = undefined;
    this.lastError = undefined;
    this.reachable.set(1);
    // Every watch retries now rather than at the end of its backoff; registrations are checked at once.
    this.trust.poke();
    this.leaves.poke();
    this.intentions.poke();
    this.entries.poke();
    this.instances.poke();
    void this.registrations.syncNow();
  }

  /** Why the agent is not fully ready, from the backend's side. */
  notReady(): string[] {
    if (this.unreachableSince === undefined) return [];
    return [`degraded: consul at ${this.http.address} unreachable since ${new Date(this.unreachableSince).toISOString()} (${this.lastError ?? 'no answer'}); serving from the last known certificates, intentions and instances`];
  }

  /** Consul is followed from start(): nothing more to join. */
  async join(): Promise<void> {}

  posture(): ReturnType<MeshBackend['posture']> {
    return { backend: 'consul' };
  }

  /** Removes this agent's registrations from Consul, so peers stop picking this node. */
  async leave(): Promise<void> {
    await this.stop(true).catch((e: Error) => this.o.log.warn({ err: e.message }, 'consul deregistration failed'));
  }

  async close(): Promise<void> {
    await this.stop(false);
  }

  /** The CA is Consul's: the agent's own CA files mean nothing here. */
  async reload(next: AgentConfig): Promise<void> {
    if (next.caFile || next.caKeyFile) this.o.log.warn('ca_file / ca_key_file are ignored with the Consul backend: the CA is Consul\'s');
  }

  describe(): Record<string, string> {
    return { consul: this.http.address };
  }

  /** Stops the watches; `deregister`: remove this agent's registrations from Consul first (a clean stop). */
  async stop(deregister = true): Promise<void> {
    this.unsubscribe();
    await this.registrations.stop(deregister);
    this.instances.stop();
    this.leaves.stop();
    this.intentions.stop();
    this.entries.stop();
    this.trust.stop();
    this.http.close();
    this.o.registry.removeSingleMetric('nodemesh_consul_reachable');
  }
}
