// What the data plane needs of trust, whichever backend (gossip pool or Consul) runs: the roots a peer may chain to, and local services' leaves.

import type { ChangeFeed } from '../lib/change-feed.js';
import type { Leaf } from './ca/leaf-holder.js';
import type { CaRoot } from './ca/certificate-authority.js';

export interface RootsView { ActiveRootID: string; TrustDomain: string; Roots: CaRoot[] }

/** The roots a peer's chain may end in. */
export interface TrustSource {
  readonly feed: ChangeFeed;
  /** Rises on every change (contexts and caches key on it). */
  readonly index: number;
  readonly trustDomain: string;
  pems(): string[];
  /** Consul's /v1/agent/connect/ca/roots shape. */
  rootsView(): RootsView;
}

/** Leaf certificates of local services, kept fresh (renewal, CA rotation). */
export interface LeafSource {
  readonly feed: ChangeFeed;
  readonly index: number;
  /** Called with every new or renewed leaf. */
  onLeaf(fn: (leaf: Leaf) => void): () => void;
  current(service: string): Leaf | undefined;
  /** The service's current leaf, fetched or signed on first use. */
  get(service: string): Promise<Leaf>;
  /** The service's last local listener went: stop renewing its leaf. */
  drop(service: string): void;
  expiries(): { service: string; seconds: number }[];
  stop(): void;
}
