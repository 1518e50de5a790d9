// Per-connection authorization from the intention store: matched once per destination, decided once per source, until intentions change.

import type { Decision, DefaultPolicy } from './decision.js';
import { decideAmong, matchIntentions } from './decision.js';
import type { Intention } from './intention.js';
import type { IntentionStore } from './intention-store.js';

/** At most this many cached decisions per destination; beyond it decisions are computed each time. */
const MAX_SOURCES_PER_DESTINATION = 4096;

export class Authorizer {
  private index = -1;
  private byDestination = new Map<string, { list: Intention[]; bySource: Map<string, Decision> }>();

  constructor(private readonly store: IntentionStore, private readonly defaultPolicy: DefaultPolicy) {}

  decide(source: { service: string; namespace: string }, destination: string): Decision {
    if (this.index !== this.store.index) {
      this.index = this.store.index;
      this.byDestination = new Map();
    }
    let dest = this.byDestination.get(destination);
    if (!dest) this.byDestination.set(destination, (dest = { list: matchIntentions(this.store.list(), 'destination', destination), bySource: new Map() }));
    const key = `${source.namespace}/${source.service}`;
    let d = dest.bySource.get(key);
    if (!d) {
      d = decideAmong(dest.list, source.service, this.defaultPolicy, source.namespace);
      if (dest.bySource.size < MAX_SOURCES_PER_DESTINATION) dest.bySource.set(key, d);
    }
    return d;
  }
}
