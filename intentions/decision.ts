// The intention matcher: which intentions apply to a destination or source, and the allow/deny decision with its reason.

import type { Intention } from './intention.js';
import { httpMatcher, type RequestFacts } from './http-match.js';
import { DEFAULT_NS, WILDCARD, compareIntentions, describeIntention } from './intention.js';

export type DefaultPolicy = 'allow' | 'deny';

export interface Decision {
  allowed: boolean;
  /** Consul's Reason text. */
  reason: string;
  /** The intention that decided, if one matched. */
  intention?: Intention;
  /**
   * An L7 intention matched: the connection may open to an HTTP service, and each request is then decided
   * by `decideRequest` (`allowed` is true at L4 only in that sense).
   */
  l7?: boolean;
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
      if (i.Permissions?.length) return { allowed: true, reason: `Matched L7 intention: ${describeIntention(i)}`, intention: i, l7: true };
      return { allowed: i.Action === 'allow', reason: `Matched intention: ${describeIntention(i)}`, intention: i };
    }
  }
  return { allowed: defaultPolicy === 'allow', reason: `Default behavior configured by default_intention_policy (${defaultPolicy})` };
}

const compiled = new WeakMap<Intention, ((r: RequestFacts) => boolean)[]>();

/**
 * One request under an L7 intention: the first permission whose HTTP match holds decides; when none does, the
 * default policy (Consul 1.9's rule).
 */
export function decideRequest(i: Intention, r: RequestFacts, defaultPolicy: DefaultPolicy): { allowed: boolean; reason: string } {
  let tests = compiled.get(i);
  if (!tests) compiled.set(i, (tests = (i.Permissions ?? []).map((p) => httpMatcher(p.HTTP))));
  const perms = i.Permissions ?? [];
  for (let n = 0; n < perms.length; n++) {
    if (tests[n](r)) return { allowed: perms[n].Action === 'allow', reason: `Matched L7 intention permission ${n} (${perms[n].Action}): ${describeIntention(i)}` };
  }
  return { allowed: defaultPolicy === 'allow', reason: `No permission of L7 intention matched; default ${defaultPolicy}: ${describeIntention(i)}` };
}
