// The intention matcher: which intentions apply to a destination or source, and the allow/deny decision with its reason.

import type { Intention } from '../model/intention.js';
import { httpMatcher, type RequestFacts } from '../model/http-match.js';
import { DEFAULT_NS, WILDCARD, compareIntentions, describeIntention } from '../model/intention.js';
import { foldName, sameName } from '../model/service-names.js';

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

/** `folded` is the name already folded: names (and namespaces) compare case-insensitively, as Consul's. */
const matches = (pattern: string, folded: string) => pattern === WILDCARD || sameName(pattern, folded);

/** Intentions whose destination (or source) matches `name` (in any case), in precedence order. */
export function matchIntentions(all: Iterable<Intention>, by: 'source' | 'destination', rawName: string, rawNs = DEFAULT_NS): Intention[] {
  const name = foldName(rawName);
  const ns = foldName(rawNs);
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
export function decideAmong(forDestination: Intention[], rawSource: string, defaultPolicy: DefaultPolicy, rawSourceNs = DEFAULT_NS): Decision {
  const source = foldName(rawSource);
  const sourceNs = foldName(rawSourceNs);
  for (const i of forDestination) {
    if (matches(i.SourceNS, sourceNs) && matches(i.SourceName, source)) {
      if (i.Permissions?.length) return { allowed: true, reason: `Matched L7 intention: ${describeIntention(i)}`, intention: i, l7: true };
      return { allowed: i.Action === 'allow', reason: `Matched intention: ${describeIntention(i)}`, intention: i };
    }
  }
  return { allowed: defaultPolicy === 'allow', reason: `Default behavior configured by default_intention_policy (${defaultPolicy})` };
}

/** An intention's permissions compiled (one matcher each), or why they cannot be. */
type CompiledPermissions = { tests: ((r: RequestFacts) => boolean)[] } | { error: string };
const compiled = new WeakMap<Intention, CompiledPermissions>();

function compile(i: Intention): CompiledPermissions {
  let c = compiled.get(i);
  if (c) return c;
  try {
    c = { tests: (i.Permissions ?? []).map((p) => httpMatcher(p.HTTP)) };
  } catch (e) {
    c = { error: `its permissions cannot be compiled: ${e instanceof Error ? e.message : String(e)}` };
  }
  compiled.set(i, c);
  return c;
}

/**
 * Compiles an intention's L7 permissions once (the store calls this as it stores one, so no regular expression is
 * compiled at request time); returns why they cannot be compiled, or undefined. Cached per intention object.
 */
export function compilePermissions(i: Intention): string | undefined {
  const c = compile(i);
  return 'error' in c ? c.error : undefined;
}

/** A request's verdict; `error` set when the intention could not be evaluated (the request is then denied). */
export interface RequestVerdict { allowed: boolean; reason: string; error?: string }

const label = (i: Intention) => {
  try {
    return describeIntention(i);
  } catch {
    return `intention ${String((i as { ID?: unknown } | null)?.ID)}`;
  }
};

/**
 * One request under an L7 intention: the first permission whose HTTP match holds decides; when none does, the
 * default policy (Consul 1.9's rule). Never throws: an intention that cannot be evaluated (a rule no validation let
 * through, e.g. from another backend) denies the request, with `error` saying why.
 */
export function decideRequest(i: Intention, r: RequestFacts, defaultPolicy: DefaultPolicy): RequestVerdict {
  const c = compile(i);
  if ('error' in c) return { allowed: false, reason: `L7 intention cannot be evaluated (${c.error}); request denied: ${label(i)}`, error: c.error };
  try {
    const perms = i.Permissions ?? [];
    for (let n = 0; n < perms.length; n++) {
      if (c.tests[n](r)) return { allowed: perms[n].Action === 'allow', reason: `Matched L7 intention permission ${n} (${perms[n].Action}): ${describeIntention(i)}` };
    }
    return { allowed: defaultPolicy === 'allow', reason: `No permission of L7 intention matched; default ${defaultPolicy}: ${describeIntention(i)}` };
  } catch (e) {
    const error = `its permissions failed on this request: ${e instanceof Error ? e.message : String(e)}`;
    return { allowed: false, reason: `L7 intention cannot be evaluated (${error}); request denied: ${label(i)}`, error };
  }
}
