// Leaf certificates from Consul's CA (/v1/agent/connect/ca/leaf/:service): fetched on first use, then a blocking query per service picks up renewals and re-signing after a root rotation.

import type { Logger } from 'pino';
import type { Leaf } from '../../identity/ca/leaf-holder.js';
import { LeafHolder } from '../../identity/ca/leaf-holder.js';
import type { LeafSource } from '../../identity/trust-sources.js';
import { BlockingWatch } from './blocking-watch.js';
import type { ConsulHttp } from './consul-http.js';

export class ConsulLeaves extends LeafHolder implements LeafSource {
  private readonly watches = new Map<string, BlockingWatch<Leaf>>();
  private readonly fetching = new Map<string, Promise<Leaf>>();
  private stopped = false;

  constructor(private readonly http: ConsulHttp, private readonly log: Logger, private readonly onError: (e: Error) => void, private readonly onOk: () => void) {
    super();
  }

  get(service: string): Promise<Leaf> {
    const have = this.leaves.get(service);
    if (have) return Promise.resolve(have);
    let p = this.fetching.get(service);
    if (!p) {
      p = this.http.get<Leaf>(`/agent/connect/ca/leaf/${encodeURIComponent(service)}`).then((r) => {
        this.onOk();
        this.take(service, r.body);
        this.follow(service);
        return this.leaves.get(service) ?? r.body;
      }).finally(() => this.fetching.delete(service));
      this.fetching.set(service, p);
    }
    return p;
  }

  /** A blocking query on the service's leaf: Consul answers when it re-signs it. */
  private follow(service: string): void {
    if (this.stopped || this.watches.has(service)) return;
    this.watches.set(service, new BlockingWatch<Leaf>(this.http, {
      path: `/agent/connect/ca/leaf/${encodeURIComponent(service)}`,
      onData: (leaf) => { this.onOk(); this.take(service, leaf); },
      onError: this.onError,
    }));
  }

  private take(service: string, leaf: Leaf): void {
    if (this.stopped) return;
    const prev = this.leaves.get(service);
    if (prev && prev.SerialNumber === leaf.SerialNumber && prev.CertPEM === leaf.CertPEM) return;
    this.nextIndex();
    this.log.info({ service, serial: leaf.SerialNumber, validBefore: leaf.ValidBefore }, prev ? 'leaf certificate renewed by consul' : 'leaf certificate from consul');
    this.publish({ ...leaf, Service: service });
  }

  drop(service: string): void {
    this.watches.get(service)?.stop();
    this.watches.delete(service);
    this.leaves.delete(service);
  }

  poke(): void {
    for (const w of this.watches.values()) w.poke();
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watches.values()) w.stop();
    this.watches.clear();
    this.feed.close();
  }
}
