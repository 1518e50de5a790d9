// The current leaf per local service and who hears of new ones: shared by the built-in signer and the Consul-fed leaves.

import { ChangeFeed } from '../../lib/change-feed.js';

/** A local service's leaf, in Consul's /v1/agent/connect/ca/leaf shape. */
export interface Leaf {
  Service: string;
  ServiceURI: string;
  SerialNumber: string;
  /** The leaf followed by any intermediates. */
  CertPEM: string;
  PrivateKeyPEM: string;
  ValidAfter: string;
  ValidBefore: string;
  CreateIndex: number;
  ModifyIndex: number;
}

export abstract class LeafHolder {
  readonly feed = new ChangeFeed();
  protected readonly leaves = new Map<string, Leaf>();
  private readonly listeners = new Set<(leaf: Leaf) => void>();
  private lastIndex = 1;

  get index(): number {
    return this.lastIndex;
  }

  /** Called with every new or renewed leaf. */
  onLeaf(fn: (leaf: Leaf) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  current(service: string): Leaf | undefined {
    return this.leaves.get(service);
  }

  /** The index the next published leaf will carry. */
  protected nextIndex(): number {
    return ++this.lastIndex;
  }

  /** Makes `leaf` the service's current one and tells every listener and waiter. */
  protected publish(leaf: Leaf): void {
    this.leaves.set(leaf.Service, leaf);
    for (const fn of this.listeners) fn(leaf);
    this.feed.notify();
  }

  /** Seconds until each leaf expires, for metrics. */
  expiries(): { service: string; seconds: number }[] {
    return [...this.leaves.values()].map((l) => ({ service: l.Service, seconds: (Date.parse(l.ValidBefore) - Date.now()) / 1000 }));
  }
}
