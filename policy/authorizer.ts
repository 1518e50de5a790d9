// Per-connection authorization from the intention store: matched once per destination, decided once per source, until intentions change.

import type { Decision, DefaultPolicy } from './decision.js';
import { decideAmong, matchIntentions } from './decision.js';
import type { Intention } from '../model/intention.js';
import type { IntentionStore } from './intention-store.js';
import { foldName } from '../model/service-names.js';
import type { ChangeFeed } from '../lib/change-feed.js';

/** Where the intentions come from (the replicated store, or a copy of Consul's): a list and an index that rises on change. */
export interface IntentionList {
  readonly index: number;
  list(): readonly Intention[];
  /** What decides when no intention matches; a change must also raise `index`. */
  defaultPolicy(): DefaultPolicy;
}

/** Intentions as decisions need them (the list, its index, the no-match default) and a feed that fires on change. */
export interface IntentionSource extends IntentionList {
  readonly feed: ChangeFeed;
}

/** The replicated store with a configured default (the gossip backend's intentions). */
export function withDefault(store: IntentionStore, policy: DefaultPolicy): IntentionList & { feed: IntentionStore['feed'] } {
  return { feed: store.feed, get index() { return store.index; }, list: () => store.list(), defaultPolicy: () => policy };
}

/** At most this many cached decisions per destination; beyond it decisions are computed each time. */
const MAX_SOURCES_PER_DESTINATION = 4096;

export class Authorizer {
  private index = -1;
  private byDestination = new Map<string, { list: Intention[]; bySource: Map<string, Decision> }>();

  private policy: DefaultPolicy = 'deny';

  constructor(private readonly store: IntentionList) {}

  /** Names compare case-insensitively: `WEB` and `web` are one source (and one cache entry), as in the intentions. */
  decide(source: { service: string; namespace: string }, rawDestination: string): Decision {
    const destination = foldName(rawDestination);
    if (this.index !== this.store.index) {
      this.index = this.store.index;
      this.policy = this.store.defaultPolicy();
      this.byDestination = new Map();
    }
    let dest = this.byDestination.get(destination);
    if (!dest) this.byDestination.set(destination, (dest = { list: matchIntentions(this.store.list(), 'destination', destination), bySource: new Map() }));
    const key = foldName(`${source.namespace}/${source.service}`);
    let d = dest.bySource.get(key);
    if (!d) {
      d = decideAmong(dest.list, source.service, this.policy, source.namespace);
      if (dest.bySource.size < MAX_SOURCES_PER_DESTINATION) dest.bySource.set(key, d);
    }
    return d;
  }
}
