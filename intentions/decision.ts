// The intention matcher: which intentions apply to a destination or source, and the allow/deny decision with its reason.

import type { Intention } from './intention.js';
import { DEFAULT_NS, WILDCARD, compareIntentions, describeIntention } from './intention.js';

export type DefaultPolicy = 'allow' | 'deny';

export interface Decision {
  allowed: boolean;
  /** Consul's Reason text. */
  reason: string;
  /** The intention that decided, if one matched. */
  intention?: Intention;
}

const matches = (pattern: string, value: string) => pattern === WILDCARD || pattern === value;

/** Intentions whose destination (or source) matches `name`, in precedence order. */
export function matchIntentions(all: Iterable<Intention>, by: 'source' | 'destination', name: string, ns = DEFAULT_NS): Intention[] {
  const out: Intention[] = [];
  for (const i of all) {
    const ok = by === 'destination'
      ? matches(i.DestinationNS, ns) && matches(i.DestinationName, name)
      : matches(i.SourceNS, ns) && matches(i.SourceName, name);
    if (ok) out.push(i);
  }
  return out.sort(compareIntentions);
}

/** The first intention in precedence order that matches both ends decides; otherwise the default policy. */
export function decide(all: Iterable<Intention>, source: string, destination: string, defaultPolicy: DefaultPolicy, sourceNs = DEFAULT_NS, destinationNs = DEFAULT_NS): Decision {
  return decideAmong(matchIntentions(all, 'destination', destination, destinationNs), source, defaultPolicy, sourceNs);
}

/** The decision from a destination's intentions already matched and in precedence order (cacheable per destination). */
export function decideAmong(forDestination: Intention[], source: string, defaultPolicy: DefaultPolicy, sourceNs = DEFAULT_NS): Decision {
  for (const i of forDestination) {
    if (matches(i.SourceNS, sourceNs) && matches(i.SourceName, source)) {
      return { allowed: i.Action === 'allow', reason: `Matched intention: ${describeIntention(i)}`, intention: i };
    }
  }
  return { allowed: defaultPolicy === 'allow', reason: `Default behavior configured by default_intention_policy (${defaultPolicy})` };
}
