// What the agent needs from where its mesh state comes from — trust roots, leaf certificates, intentions — whichever backend (gossip pool or Consul) runs.

import type { ChangeFeed } from '../catalog/change-feed.js';
import type { IntentionList } from '../intentions/authorizer.js';
import type { Leaf } from './ca/leaf-certs.js';
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

/** Intentions as decisions need them (the list, its index, the no-match default) and a feed that fires on change. */
export interface IntentionSource extends IntentionList {
  readonly feed: ChangeFeed;
}
